// Requests to twins and their replies as Cap'n Proto bytes (schemas/requests.capnp).

#include "twin/runtime/wire.hpp"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/exception.h>
#include <kj/io.h>

#include "capnp_values.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/schema/requests.capnp.h"

namespace twin::runtime {

using namespace capn;

namespace {

// Bytes from another node get the limits of stored records.
constexpr uint64_t max_message_words = 8u << 20;  // 64 MiB
constexpr int max_nesting = 32;

template <class Fill>
std::string packed(Fill fill) {
  capnp::MallocMessageBuilder msg;
  fill(msg);
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

/// Runs `read` on the root of `bytes`; the reason if the bytes are malformed.
template <class Root, class Read>
std::string unpacked(std::string_view bytes, Read read) {
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = max_message_words;
    opts.nestingLimit = max_nesting;
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::PackedMessageReader reader{in, opts};
    read(reader.getRoot<Root>());
  });
  KJ_IF_MAYBE (e, failure) {
    return e->getDescription().cStr();
  }
  return {};
}

void set_if(schema::IfVersion::Builder out, const std::optional<uint64_t>& v) {
  out.setSet(v.has_value());
  out.setVersion(v.value_or(0));
}

std::optional<uint64_t> get_if(schema::IfVersion::Reader in) {
  return in.getSet() ? std::optional<uint64_t>{in.getVersion()} : std::nullopt;
}

void set_child(schema::ChildLink::Builder out, const child_state& c, twin_kind kind) {
  auto s = out.initState();
  s.setId(text(c.id.str()));
  write_entries(s.initValues(static_cast<unsigned>(c.values.size())), c.values);
  s.setHealth(to_schema(c.health));
  s.setType(text(c.type));
  out.setKind(to_schema(kind));
}

/// An id from another node: checked like one from a client. `optional`: may be empty.
twin_id read_id(capnp::Text::Reader t, bool optional = false) {
  auto s = str(t);
  if (optional && s.empty())
    return {};
  auto id = twin_id::parse(s);
  KJ_REQUIRE(static_cast<bool>(id), "an invalid twin id");
  return std::move(*id);
}

/// Sets the relationships of `b` (a put or a patch) to `rels`.
template <typename Builder>
void write_relationships(Builder b, const std::vector<relationship>& rels) {
  auto out = b.initRelationships(static_cast<unsigned>(rels.size()));
  for (unsigned i = 0; i < out.size(); ++i) {
    out[i].setName(text(rels[i].name));
    out[i].setTarget(text(rels[i].target.str()));
  }
}

std::vector<relationship> read_relationships(capnp::List<schema::Relationship>::Reader in) {
  std::vector<relationship> out;
  out.reserve(in.size());
  for (auto rel : in)
    out.push_back({str(rel.getName()), read_id(rel.getTarget())});
  return out;
}

child_state read_child(schema::ChildState::Reader in) {
  return child_state{read_id(in.getId()), read_entries(in.getValues()),
                     from_schema(in.getHealth()), str(in.getType())};
}

void encode_body(schema::Request::Builder r, const twin_request& req) {
  std::visit(
    [&](const auto& x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, ingest_request>) {
        auto b = r.initIngest();
        write_entries(b.initValues(static_cast<unsigned>(x.values.size())), x.values);
        b.setTs(x.ts_ms);
        b.setSource(text(x.source));
      } else if constexpr (std::is_same_v<T, put_request>) {
        auto b = r.initPut();
        b.setType(text(x.type));
        b.setParent(text(x.parent.str()));
        write_entries(b.initProperties(static_cast<unsigned>(x.properties.size())), x.properties);
        write_entries(b.initDesired(static_cast<unsigned>(x.desired.size())), x.desired);
        write_relationships(b, x.relationships);
        set_if(b.initIfVersion(), x.if_version);
        b.setSource(text(x.source));
      } else if constexpr (std::is_same_v<T, patch_request>) {
        auto b = r.initPatch();
        write_entries(b.initProperties(static_cast<unsigned>(x.properties.size())), x.properties);
        write_entries(b.initDesired(static_cast<unsigned>(x.desired.size())), x.desired);
        set_if(b.initIfVersion(), x.if_version);
        b.setSource(text(x.source));
        if (x.parent) {
          b.setSetParent(true);
          b.setParent(text(x.parent->str()));
        }
        if (x.relationships) {
          b.setSetRelationships(true);
          write_relationships(b, *x.relationships);
        }
      } else if constexpr (std::is_same_v<T, get_request>) {
        r.setGet();
      } else if constexpr (std::is_same_v<T, remove_request>) {
        set_if(r.initRemove(), x.if_version);
        r.setRefuseChildren(x.refuse_with_children);
      } else if constexpr (std::is_same_v<T, command_request>) {
        auto b = r.initCommand();
        b.setName(text(x.name));
        write_value(b.initArgs(), x.args);
      } else if constexpr (std::is_same_v<T, child_update>) {
        set_child(r.initChildUpdate(), x.state, x.kind);
      } else if constexpr (std::is_same_v<T, attach_request>) {
        set_child(r.initAttach(), x.state, x.kind);
      } else if constexpr (std::is_same_v<T, detach_notice>) {
        r.setDetach(text(x.child.str()));
      } else if constexpr (std::is_same_v<T, orphan_notice>) {
        r.setOrphan(text(x.parent.str()));
      } else if constexpr (std::is_same_v<T, ancestor_query>) {
        auto b = r.initAncestorQuery();
        b.setCandidate(text(x.candidate.str()));
        b.setKind(to_schema(x.kind));
      } else if constexpr (std::is_same_v<T, child_query>) {
        r.setChildQuery(text(x.parent.str()));
      }
    },
    req);
}

// -- replies ------------------------------------------------------------------------

std::string error_reply(const caf::error& err) {
  return packed([&](capnp::MessageBuilder& m) {
    auto e = m.initRoot<schema::Reply>().initError();
    auto code = error_code(err);
    e.setCategory(code != runtime_errc::none ? "twin" : "other");
    e.setCode(static_cast<uint8_t>(code));
    e.setMessage(text(error_message(err)));
  });
}

caf::error read_error(schema::Error::Reader e) {
  auto code = e.getCode();
  if (str(e.getCategory()) == "twin" && code > 0
      && code <= static_cast<uint8_t>(runtime_errc::not_owner))
    return make_error(static_cast<runtime_errc>(code), str(e.getMessage()));
  return make_error(runtime_errc::unavailable, str(e.getMessage()));
}

template <class T, class Fill>
std::string reply_of(const caf::expected<T>& x, Fill fill) {
  if (!x)
    return error_reply(x.error());
  return packed([&](capnp::MessageBuilder& m) { fill(m.initRoot<schema::Reply>(), *x); });
}

version_fn version_reply(reply_fn reply) {
  return [reply = std::move(reply)](caf::expected<uint64_t> v) {
    reply(reply_of(v, [](schema::Reply::Builder r, uint64_t x) { r.setVersion(x); }));
  };
}

/// Gives the request's callback its answer from `r`; false if `r` is of another kind.
bool answer(twin_request& req, schema::Reply::Reader r) {
  using which = schema::Reply::Which;
  return std::visit(
    [&](auto& x) -> bool {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, ingest_request> || std::is_same_v<T, patch_request>
                    || std::is_same_v<T, remove_request>) {
        if (r.which() != which::VERSION)
          return false;
        x.done(r.getVersion());
      } else if constexpr (std::is_same_v<T, put_request>) {
        if (r.which() != which::PUT)
          return false;
        x.done(put_result{r.getPut().getVersion(), r.getPut().getCreated()});
      } else if constexpr (std::is_same_v<T, get_request>) {
        if (r.which() != which::RECORD)
          return false;
        auto bytes = r.getRecord();
        x.done(decode_record({reinterpret_cast<const char*>(bytes.begin()), bytes.size()}));
      } else if constexpr (std::is_same_v<T, command_request>) {
        if (r.which() != which::VALUE)
          return false;
        x.done(read_value(r.getValue()));
      } else if constexpr (std::is_same_v<T, attach_request>) {
        if (r.which() != which::DONE)
          return false;
        x.done(caf::error{});
      } else if constexpr (std::is_same_v<T, ancestor_query>) {
        if (r.which() != which::ANSWER)
          return false;
        x.done(r.getAnswer());
      } else {
        return false;  // not answered
      }
      return true;
    },
    req);
}

} // namespace

std::string encode_request(const twin_id& id, const twin_request& req) {
  return packed([&](capnp::MessageBuilder& m) {
    auto r = m.initRoot<schema::Request>();
    r.setTwin(text(id.str()));
    encode_body(r, req);
  });
}

caf::expected<decoded_request> decode_request(std::string_view bytes, reply_fn reply) {
  decoded_request out;
  auto why = unpacked<schema::Request>(bytes, [&](schema::Request::Reader r) {
    using which = schema::Request::Which;
    out.id = read_id(r.getTwin());
    switch (r.which()) {
      case which::INGEST: {
        auto b = r.getIngest();
        out.req = ingest_request{read_entries(b.getValues()), b.getTs(), str(b.getSource()),
                                 version_reply(std::move(reply))};
        break;
      }
      case which::PUT: {
        auto b = r.getPut();
        put_request p;
        p.type = str(b.getType());
        p.parent = read_id(b.getParent(), true);
        p.properties = read_entries(b.getProperties());
        p.desired = read_entries(b.getDesired());
        p.relationships = read_relationships(b.getRelationships());
        p.if_version = get_if(b.getIfVersion());
        p.source = str(b.getSource());
        p.done = [reply = std::move(reply)](caf::expected<put_result> x) {
          reply(reply_of(x, [](schema::Reply::Builder r, const put_result& p) {
            r.initPut().setVersion(p.version);
            r.getPut().setCreated(p.created);
          }));
        };
        out.req = std::move(p);
        break;
      }
      case which::PATCH: {
        auto b = r.getPatch();
        patch_request p;
        p.properties = read_entries(b.getProperties());
        p.desired = read_entries(b.getDesired());
        p.if_version = get_if(b.getIfVersion());
        p.source = str(b.getSource());
        if (b.getSetParent())
          p.parent = read_id(b.getParent(), true);
        if (b.getSetRelationships())
          p.relationships = read_relationships(b.getRelationships());
        p.done = version_reply(std::move(reply));
        out.req = std::move(p);
        break;
      }
      case which::GET:
        out.req = get_request{[reply = std::move(reply)](caf::expected<twin_record> x) {
          reply(reply_of(x, [](schema::Reply::Builder r, const twin_record& rec) {
            auto bytes = encode(rec);
            r.setRecord(capnp::Data::Reader{reinterpret_cast<const kj::byte*>(bytes.data()),
                                            bytes.size()});
          }));
        }};
        break;
      case which::REMOVE: {
        remove_request p;
        p.if_version = get_if(r.getRemove());
        p.refuse_with_children = r.getRefuseChildren();
        p.done = version_reply(std::move(reply));
        out.req = std::move(p);
        break;
      }
      case which::COMMAND: {
        auto b = r.getCommand();
        out.req = command_request{
          str(b.getName()), read_value(b.getArgs()),
          [reply = std::move(reply)](caf::expected<value> x) {
            reply(reply_of(x, [](schema::Reply::Builder r, const value& v) {
              write_value(r.initValue(), v);
            }));
          }};
        break;
      }
      case which::CHILD_UPDATE: {
        auto b = r.getChildUpdate();
        out.req = child_update{read_child(b.getState()), from_schema(b.getKind())};
        break;
      }
      case which::ATTACH: {
        auto b = r.getAttach();
        out.req = attach_request{read_child(b.getState()), from_schema(b.getKind()),
                                 [reply = std::move(reply)](caf::error err) {
                                   if (err)
                                     return reply(error_reply(err));
                                   reply(packed([](capnp::MessageBuilder& m) {
                                     m.initRoot<schema::Reply>().setDone();
                                   }));
                                 }};
        break;
      }
      case which::DETACH: out.req = detach_notice{read_id(r.getDetach())}; break;
      case which::ORPHAN: out.req = orphan_notice{read_id(r.getOrphan())}; break;
      case which::ANCESTOR_QUERY: {
        auto b = r.getAncestorQuery();
        out.req = ancestor_query{read_id(b.getCandidate()), from_schema(b.getKind()),
                                 [reply = std::move(reply)](bool yes) {
                                   reply(packed([yes](capnp::MessageBuilder& m) {
                                     m.initRoot<schema::Reply>().setAnswer(yes);
                                   }));
                                 }};
        break;
      }
      case which::CHILD_QUERY: out.req = child_query{read_id(r.getChildQuery())}; break;
      default: KJ_FAIL_REQUIRE("a kind of request this node does not know");
    }
  });
  if (!why.empty())
    return make_error(runtime_errc::invalid_argument, "a malformed request: " + why);
  return out;
}

std::string encode_error_reply(const caf::error& err) {
  return error_reply(err);
}

bool expects_reply(const twin_request& req) {
  return !std::holds_alternative<child_update>(req) && !std::holds_alternative<detach_notice>(req)
         && !std::holds_alternative<orphan_notice>(req)
         && !std::holds_alternative<child_query>(req);
}

void deliver_reply(twin_request& req, std::string_view reply) {
  bool answered = false;
  auto why = unpacked<schema::Reply>(reply, [&](schema::Reply::Reader r) {
    if (r.which() == schema::Reply::ERROR) {
      fail_request(req, read_error(r.getError()));
      answered = true;
    } else {
      answered = answer(req, r);
    }
  });
  if (!answered)
    fail_request(req, make_error(runtime_errc::invalid_argument,
                                 why.empty() ? "a reply of another kind than its request"
                                             : "a malformed reply: " + why));
}

std::string encode_events(const std::vector<change_feed::event_ptr>& events) {
  return packed([&](capnp::MessageBuilder& m) {
    auto list = m.initRoot<schema::ChangeEvents>().initEvents(static_cast<unsigned>(events.size()));
    for (unsigned i = 0; i < events.size(); ++i) {
      const auto& ev = *events[i];
      auto out = list[i];
      out.setKind(static_cast<schema::ChangeKind>(static_cast<uint16_t>(ev.kind)));
      out.setId(text(ev.id.str()));
      out.setType(text(ev.type));
      out.setVersion(ev.version);
      out.setTs(ev.ts_ms);
      write_entries(out.initProperties(static_cast<unsigned>(ev.properties.size())), ev.properties);
      write_entries(out.initDesired(static_cast<unsigned>(ev.desired.size())), ev.desired);
      out.setCommand(text(ev.command));
      write_value(out.initArgs(), ev.args);
    }
  });
}

caf::expected<std::vector<change_feed::event_ptr>> decode_events(std::string_view bytes) {
  std::vector<change_feed::event_ptr> out;
  auto why = unpacked<schema::ChangeEvents>(bytes, [&](schema::ChangeEvents::Reader r) {
    for (auto in : r.getEvents()) {
      auto kind = static_cast<uint16_t>(in.getKind());
      KJ_REQUIRE(kind <= 2, "a kind of change this node does not know");
      auto ev = std::make_shared<change_event>();
      ev->kind = static_cast<change_event::kind_t>(kind);
      ev->id = read_id(in.getId());
      ev->type = str(in.getType());
      ev->version = in.getVersion();
      ev->ts_ms = in.getTs();
      ev->properties = read_entries(in.getProperties());
      ev->desired = read_entries(in.getDesired());
      ev->command = str(in.getCommand());
      ev->args = read_value(in.getArgs());
      out.push_back(std::move(ev));
    }
  });
  if (!why.empty())
    return make_error(runtime_errc::invalid_argument, "malformed change events: " + why);
  return out;
}

} // namespace twin::runtime
