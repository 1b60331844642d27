#include "devices.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <iostream>

#include <openssl/evp.h>
#include <openssl/rand.h>

namespace twinctl {

namespace {

std::string base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data,
                            static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

std::string random_text(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(bytes)) != 1)
    throw std::runtime_error("no random bytes");
  auto text = base64(raw.data(), raw.size());
  for (auto& c : text)  // URL- and shell-safe
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!text.empty() && text.back() == '=')
    text.pop_back();
  return text;
}

/// Appends `text` to `path`, made readable by its owner only if it is new.
bool append_private(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return false;
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool valid_id(const std::string& id) {
  auto colon = id.find(':');
  return colon != std::string::npos && colon > 0 && colon + 1 < id.size()
         && id.find_first_of("/+# \t\r\n") == std::string::npos;
}

} // namespace

std::string device_user(const std::string& id) {
  auto out = id;
  for (auto& c : out)
    c = c == ':' ? '/' : c;
  return out;
}

std::string mosquitto_password_line(const std::string& user, const std::string& password) {
  constexpr int rounds = 101;
  std::array<unsigned char, 12> salt{};
  std::array<unsigned char, 64> hash{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1
      || PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                           static_cast<int>(salt.size()), rounds, EVP_sha512(),
                           static_cast<int>(hash.size()), hash.data())
           != 1)
    throw std::runtime_error("cannot hash a password");
  return user + ":$7$" + std::to_string(rounds) + "$" + base64(salt.data(), salt.size()) + "$"
         + base64(hash.data(), hash.size()) + "\n";
}

std::string mosquitto_acl_entry(const std::string& id) {
  return "\nuser " + device_user(id) + "\ntopic write twins/" + id + "/telemetry\ntopic read twins/"
         + id + "/desired\ntopic read twins/" + id + "/commands/#\n";
}

void device_commands::add_to(CLI::App& app) {
  auto* device = app.add_subcommand("device", "Devices' accounts at the MQTT broker");
  device->require_subcommand(1);
  cmd_ = device->add_subcommand(
    "credentials", "Make broker accounts for devices, each allowed its own twin's topics only "
                   "(Mosquitto's password and ACL files)");
  cmd_->add_option("ids", ids_, "Twin ids");
  cmd_->add_option("--type", type_, "Every twin of this type the node has, too");
  cmd_->add_option("--password-file", password_file_, "Mosquitto password file to add to")
    ->required();
  cmd_->add_option("--acl-file", acl_file_, "Mosquitto ACL file to add to")->required();
}

int device_commands::run(client& c) const {
  auto ids = ids_;
  if (!type_.empty()) {
    std::string cursor;
    for (int pages = 0; pages < 100000; ++pages) {
      int code = ok;
      auto answer = call_checked(
        c, http::verb::get,
        "/v1/twins" + query_string({{"type", type_}, {"limit", "1000"}, {"cursor", cursor}}),
        code);
      if (!answer)
        return code;
      const auto& r = *answer;
      for (const auto& t : r.body.value("items", json::array()))
        ids.push_back(t.value("id", ""));
      if (!r.body.contains("cursor") || !r.body["cursor"].is_string())
        break;
      cursor = r.body["cursor"].get<std::string>();
    }
  }
  if (ids.empty()) {
    std::cerr << "twinctl: no twins: name them, or give --type\n";
    return usage;
  }
  for (const auto& id : ids)
    if (!valid_id(id)) {
      std::cerr << "twinctl: '" << id << "' is not a twin id\n";
      return usage;
    }
  std::string passwords, acl, printed;
  for (const auto& id : ids) {
    auto secret = random_text(24);
    passwords += mosquitto_password_line(device_user(id), secret);
    acl += mosquitto_acl_entry(id);
    printed += device_user(id) + " " + secret + "\n";
  }
  if (!append_private(password_file_, passwords) || !append_private(acl_file_, acl)) {
    std::cerr << "twinctl: cannot write " << password_file_ << " or " << acl_file_ << '\n';
    return usage;
  }
  std::cout << printed;
  std::cerr << ids.size() << " device accounts added; reload the broker (SIGHUP) to use them\n";
  return ok;
}

} // namespace twinctl
