#include "twin/runtime/errc.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace twin::runtime {

std::string to_string(runtime_errc x) {
  switch (x) {
    case runtime_errc::none: return "none";
    case runtime_errc::invalid_id: return "invalid_id";
    case runtime_errc::invalid_argument: return "invalid_argument";
    case runtime_errc::not_found: return "not_found";
    case runtime_errc::unknown_type: return "unknown_type";
    case runtime_errc::unknown_property: return "unknown_property";
    case runtime_errc::type_mismatch: return "type_mismatch";
    case runtime_errc::out_of_range: return "out_of_range";
    case runtime_errc::read_only: return "read_only";
    case runtime_errc::version_conflict: return "version_conflict";
    case runtime_errc::invalid_parent: return "invalid_parent";
    case runtime_errc::invalid_model: return "invalid_model";
    case runtime_errc::store_failure: return "store_failure";
    case runtime_errc::store_locked: return "store_locked";
    case runtime_errc::store_corrupt: return "store_corrupt";
    case runtime_errc::shutting_down: return "shutting_down";
    case runtime_errc::timeout: return "timeout";
    case runtime_errc::unavailable: return "unavailable";
    case runtime_errc::conflict: return "conflict";
    case runtime_errc::future_timestamp: return "future_timestamp";
    case runtime_errc::insufficient_storage: return "insufficient_storage";
    case runtime_errc::not_owner: return "not_owner";
  }
  return "unknown";
}

caf::error make_error(runtime_errc code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), caf::atom("twin"),
                    caf::make_message(std::move(message))};
}

runtime_errc error_code(const caf::error& err) {
  if (!err || err.category() != caf::atom("twin"))
    return runtime_errc::none;
  return static_cast<runtime_errc>(err.code());
}

std::string error_message(const caf::error& err) {
  if (!err)
    return {};
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  if (err.category() == caf::atom("system"))
    return caf::to_string(static_cast<caf::sec>(err.code()));
  return caf::to_string(err);
}

} // namespace twin::runtime
