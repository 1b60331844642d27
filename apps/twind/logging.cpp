#include "logging.hpp"

#include <string_view>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace twin::node {

namespace {

/// The length of the valid UTF-8 sequence at the start of `s`, 0 if there is none.
size_t utf8_length(std::string_view s) {
  auto b = [&s](size_t i) { return static_cast<unsigned char>(s[i]); };
  auto in = [](unsigned char c, unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; };
  auto c0 = b(0);
  size_t n = in(c0, 0xc2, 0xdf) ? 2 : in(c0, 0xe0, 0xef) ? 3 : in(c0, 0xf0, 0xf4) ? 4 : 0;
  if (n == 0 || s.size() < n)
    return 0;
  // The second byte's range excludes overlong forms, surrogates and code points past
  // U+10FFFF.
  unsigned char lo = c0 == 0xe0 ? 0xa0 : c0 == 0xf0 ? 0x90 : 0x80;
  unsigned char hi = c0 == 0xed ? 0x9f : c0 == 0xf4 ? 0x8f : 0xbf;
  if (!in(b(1), lo, hi))
    return 0;
  for (size_t i = 2; i < n; ++i)
    if (!in(b(i), 0x80, 0xbf))
      return 0;
  return n;
}

/// The message as the contents of a JSON string: quotes, backslashes and control
/// characters escaped, and each byte that is not part of valid UTF-8 replaced by U+FFFD.
class json_message final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char hex[] = "0123456789abcdef";
    std::string_view text{msg.payload.data(), msg.payload.size()};
    for (size_t i = 0; i < text.size();) {
      auto u = static_cast<unsigned char>(text[i]);
      if (u == '"' || u == '\\') {
        dest.push_back('\\');
        dest.push_back(text[i++]);
      } else if (u < 0x20) {
        char esc[] = {'\\', 'u', '0', '0', hex[u >> 4], hex[u & 15]};
        dest.append(esc, esc + sizeof esc);
        ++i;
      } else if (u < 0x80) {
        dest.push_back(text[i++]);
      } else if (auto n = utf8_length(text.substr(i)); n > 0) {
        dest.append(text.data() + i, text.data() + i + n);
        i += n;
      } else {
        dest.append(std::string_view{"\\ufffd"});
        ++i;
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message>();
  }
};

} // namespace

void setup_logging(const std::string& format) {
  auto logger = spdlog::get("twind");
  if (!logger)
    logger = spdlog::stderr_color_mt("twind");
  if (format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<json_message>('*').set_pattern(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n","thread":%t,"msg":"%*"})");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::set_default_logger(std::move(logger));
}

} // namespace twin::node
