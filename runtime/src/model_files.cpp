// Model files: one file, or every `*.json` file under a directory, loaded as one set.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/model.hpp"

namespace twin::runtime {

namespace {

caf::error model_failure(const std::string& why) {
  return make_error(runtime_errc::invalid_model, why);
}

} // namespace

caf::expected<type_ptr> load_model_file(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return model_failure("cannot read model file " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_model(buf.str(), path);
}

caf::expected<size_t> load_models(const std::string& path, type_registry& registry) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  auto status = fs::status(path, ec);
  if (fs::is_regular_file(status))
    files.push_back(path);
  else if (!fs::exists(status))
    return model_failure("model path " + path + " does not exist");
  else if (!fs::is_directory(status))
    return model_failure("model path " + path + " is neither a directory nor a file");
  else
    for (const auto& e : fs::recursive_directory_iterator{path, ec})
      if (e.is_regular_file() && e.path().extension() == ".json")
        files.push_back(e.path());
  if (ec)
    return model_failure("cannot list " + path + ": " + ec.message());
  std::sort(files.begin(), files.end());
  std::vector<std::pair<std::string, std::string>> texts;
  for (const auto& f : files) {
    std::ifstream in{f};
    std::stringstream buf;
    buf << in.rdbuf();
    if (!in)
      return model_failure("cannot read model file " + f.string());
    texts.emplace_back(f.string(), buf.str());
  }
  auto types = parse_models(texts, registry);
  if (!types)
    return types.error();
  for (const auto& t : *types)
    if (auto err = registry.add(t))
      return err;
  if (auto err = registry.check_links())
    return err;
  for (auto& [origin, text] : texts)
    registry.add_source(std::move(origin), std::move(text));
  return types->size();
}

} // namespace twin::runtime
