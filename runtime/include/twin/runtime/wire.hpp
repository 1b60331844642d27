#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "twin/runtime/change_feed.hpp"
#include "twin/runtime/messages.hpp"
#include "twin/runtime/twin_id.hpp"

namespace twin::runtime {

/// Requests to twins as bytes (Cap'n Proto, schemas/requests.capnp), for a router that
/// delivers them on another node. A request crosses as its payload only, never as a
/// callback: the sender keeps the request under a token of its own, the node of the twin
/// decodes it with a callback that encodes the twin's answer as a reply, and the sender
/// hands the reply to the request it kept. Requests between twins (child updates,
/// attach, ancestor and child queries) cross the same way.

/// The payload of `req` to twin `id`: everything but its callback and receive time.
std::string encode_request(const twin_id& id, const twin_request& req);

/// Where the reply to a decoded request goes: called once, with the encoded reply.
using reply_fn = std::function<void(std::string reply)>;

struct decoded_request {
  twin_id id;
  twin_request req;
};

/// Decodes what `encode_request` wrote. The request's callback (for the kinds that have
/// one) encodes the answer and passes it to `reply`; the other kinds never call it.
/// Returns `invalid_argument` for malformed bytes or invalid twin ids.
caf::expected<decoded_request> decode_request(std::string_view bytes, reply_fn reply);

/// A reply that answers a request with `err` (for a request that cannot be delivered).
std::string encode_error_reply(const caf::error& err);

/// Whether requests of this kind are answered (they have a callback).
bool expects_reply(const twin_request& req);

/// Answers `req`, the request as its sender kept it, with the `reply` its twin gave. A
/// malformed reply, or one of another kind, answers it with `invalid_argument`.
void deliver_reply(twin_request& req, std::string_view reply);

/// Change events as bytes, in order: how a node streams its twins' changes to the nodes
/// whose clients watch them.
std::string encode_events(const std::vector<change_feed::event_ptr>& events);

/// Decodes what `encode_events` wrote; `invalid_argument` for malformed bytes, invalid
/// twin ids or kinds this node does not know.
caf::expected<std::vector<change_feed::event_ptr>> decode_events(std::string_view bytes);

} // namespace twin::runtime
