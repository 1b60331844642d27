// libFuzzer target: requests and replies as another node sends them. Whatever the bytes,
// a request decodes or gives an error, and one that decodes encodes to bytes that decode
// to the same request again (unless the encoding outgrew the limit of a message: Cap'n
// Proto's lists of empty elements hold many values in few words, which encode larger); a
// reply answers the request it is given exactly once; change events decode or give an
// error, and those that decode encode to bytes that decode to the same events.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "twin/runtime/errc.hpp"
#include "twin/runtime/wire.hpp"

namespace {

using namespace twin::runtime;

/// A request of each kind that is answered, with a callback that counts its calls.
twin_request answered(unsigned kind, int& calls) {
  auto id = twin_id::trusted("f:x");
  switch (kind % 7) {
    case 0: return ingest_request{{}, 0, "t", [&](caf::expected<uint64_t>) { ++calls; }};
    case 1: {
      put_request p;
      p.done = [&](caf::expected<put_result>) { ++calls; };
      return p;
    }
    case 2: return get_request{[&](caf::expected<twin_record>) { ++calls; }};
    case 3: return command_request{"c", value{}, [&](caf::expected<value>) { ++calls; }};
    case 4: return attach_request{{id, {}, severity::ok, "t"}, twin_kind::component,
                                  [&](caf::error) { ++calls; }};
    case 5: return ancestor_query{id, twin_kind::asset, [&](bool) { ++calls; }};
    default: {
      remove_request r;
      r.done = [&](caf::expected<uint64_t>) { ++calls; };
      return r;
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes{reinterpret_cast<const char*>(data), size};
  auto d = decode_request(bytes, [](std::string) {});
  if (d) {
    auto again = encode_request(d->id, d->req);
    auto d2 = decode_request(again, [](std::string) {});
    if (!d2 && error_message(d2.error()).find("too large") != std::string::npos)
      return 0;
    if (!d2 || d2->id != d->id || d2->req.index() != d->req.index()
        || encode_request(d2->id, d2->req) != again)
      std::abort();
  }
  if (auto events = decode_events(bytes)) {
    auto again = encode_events(*events);
    auto e2 = decode_events(again);
    if (!e2 && error_message(e2.error()).find("too large") != std::string::npos)
      return 0;
    if (!e2 || e2->size() != events->size() || encode_events(*e2) != again)
      std::abort();
  }
  int calls = 0;
  auto req = answered(size, calls);
  deliver_reply(req, bytes);
  if (calls != 1)
    std::abort();
  return 0;
}
