#include "twin/runtime/messages.hpp"

namespace twin::runtime {

void fail_request(twin_request& req, const caf::error& err) {
  std::visit(
    [&](auto& r) {
      using T = std::decay_t<decltype(r)>;
      if constexpr (std::is_same_v<T, ancestor_query>)
        r.done(true);  // an ancestor that cannot be asked: refuse rather than risk a cycle
      else if constexpr (!std::is_same_v<T, child_update> && !std::is_same_v<T, detach_notice>
                         && !std::is_same_v<T, orphan_notice> && !std::is_same_v<T, child_query>)
        r.done(err);
    },
    req);
}

} // namespace twin::runtime
