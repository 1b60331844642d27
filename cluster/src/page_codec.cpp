#include "page_codec.hpp"

#include <cstring>

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>

#include "twin/runtime/errc.hpp"
#include "twin/schema/cluster.capnp.h"

namespace twin::cluster {

namespace {

kj::StringPtr text(const std::string& s) {
  return kj::StringPtr{s.c_str(), s.size()};
}

capnp::Data::Reader data(const std::string& s) {
  return capnp::Data::Reader{reinterpret_cast<const kj::byte*>(s.data()), s.size()};
}

std::string str(capnp::Text::Reader t) {
  return std::string{t.cStr(), t.size()};
}

std::string str(capnp::Data::Reader d) {
  return std::string{reinterpret_cast<const char*>(d.begin()), d.size()};
}

void write_index(capnp::List<schema::IndexEntry>::Builder out,
                 const std::vector<runtime::index_entry>& entries) {
  for (unsigned i = 0; i < out.size(); ++i) {
    const auto& e = entries[i];
    out[i].setByParent(e.index == runtime::index_kind::by_parent);
    out[i].setKey(text(e.key));
    out[i].setId(text(e.id.str()));
  }
}

void write_ids(capnp::List<capnp::Text>::Builder out, const std::vector<runtime::twin_id>& ids) {
  for (unsigned i = 0; i < out.size(); ++i)
    out.set(i, text(ids[i].str()));
}

void fill_page(schema::ShardPage::Builder p, runtime::shard_id shard,
               const runtime::store_batch& b, const std::string& next) {
  p.setShard(shard.value());
  auto records = p.initRecords(static_cast<unsigned>(b.puts.size()));
  for (unsigned i = 0; i < records.size(); ++i) {
    records[i].setId(text(b.puts[i].first.str()));
    records[i].setRecord(data(b.puts[i].second));
  }
  write_index(p.initIndex(static_cast<unsigned>(b.index_adds.size())), b.index_adds);
  write_index(p.initIndexRemoves(static_cast<unsigned>(b.index_removes.size())),
              b.index_removes);
  write_ids(p.initDeletes(static_cast<unsigned>(b.deletes.size())), b.deletes);
  write_ids(p.initHistoryDeletes(static_cast<unsigned>(b.history_deletes.size())),
            b.history_deletes);
  auto history = p.initHistory(static_cast<unsigned>(b.history.size()));
  for (unsigned i = 0; i < history.size(); ++i) {
    const auto& h = b.history[i];
    history[i].setId(text(h.id.str()));
    history[i].setProperty(text(h.property));
    history[i].setTs(h.ts_ms);
    history[i].setValue(data(h.bytes));
  }
  auto meta = p.initMeta(static_cast<unsigned>(b.meta_puts.size()));
  for (unsigned i = 0; i < meta.size(); ++i) {
    meta[i].setKey(text(b.meta_puts[i].key));
    meta[i].setValue(data(b.meta_puts[i].value));
  }
  p.setNext(data(next));
}

/// Reads a page of `shard`; throws (KJ) if an entry is of another shard.
runtime::shard_page read_page(schema::ShardPage::Reader p, runtime::shard_id shard,
                              uint32_t shard_count) {
  runtime::shard_page page;
  auto& b = page.entries;
  auto id_of = [&](capnp::Text::Reader t) {
    auto id = runtime::twin_id::parse(str(t));
    KJ_REQUIRE(static_cast<bool>(id), "an invalid twin id");
    KJ_REQUIRE(runtime::shard_of(*id, shard_count) == shard, "a twin of another shard");
    return std::move(*id);
  };
  KJ_REQUIRE(p.getShard() == shard.value(), "a page of another shard");
  for (auto r : p.getRecords())
    b.puts.emplace_back(id_of(r.getId()), str(r.getRecord()));
  auto index_entry = [&](schema::IndexEntry::Reader e) {
    return runtime::index_entry{e.getByParent() ? runtime::index_kind::by_parent
                                                : runtime::index_kind::by_type,
                                str(e.getKey()), id_of(e.getId())};
  };
  for (auto e : p.getIndex())
    b.index_adds.push_back(index_entry(e));
  for (auto e : p.getIndexRemoves())
    b.index_removes.push_back(index_entry(e));
  for (auto id : p.getDeletes())
    b.deletes.push_back(id_of(id));
  for (auto id : p.getHistoryDeletes())
    b.history_deletes.push_back(id_of(id));
  for (auto h : p.getHistory())
    b.history.push_back({id_of(h.getId()), str(h.getProperty()), h.getTs(), str(h.getValue())});
  for (auto m : p.getMeta())
    b.meta_puts.push_back({shard, str(m.getKey()), str(m.getValue())});
  page.next = str(p.getNext());
  return page;
}

std::string packed(capnp::MessageBuilder& msg) {
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

/// The message unpacked: what crosses between members often (batches and their
/// acknowledgements) is read in place rather than unpacked first.
std::string flat(capnp::MessageBuilder& msg) {
  kj::VectorOutputStream out;
  capnp::writeMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

/// Runs `read` on the root of the message `bytes` (packed, or else flat); the error
/// names `what`.
template <class Root, class F>
caf::error read_message(std::string_view bytes, bool packed, const char* what, F&& read) {
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = 64u << 20;  // 512 MiB: bounded by its sender
    if (packed) {
      kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
        reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
      capnp::PackedMessageReader reader{in, opts};
      read(reader.getRoot<Root>());
      return;
    }
    KJ_REQUIRE(bytes.size() % sizeof(capnp::word) == 0, "not a whole number of words");
    kj::Array<capnp::word> copy;  // the words must be aligned
    auto words = kj::ArrayPtr<const capnp::word>{
      reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / sizeof(capnp::word)};
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(capnp::word) != 0) {
      copy = kj::heapArray<capnp::word>(words.size());
      std::memcpy(copy.begin(), bytes.data(), bytes.size());
      words = copy;
    }
    capnp::FlatArrayMessageReader reader{words, opts};
    read(reader.getRoot<Root>());
  });
  KJ_IF_MAYBE (e, failure) {
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               std::string{"a malformed "} + what + ": "
                                 + e->getDescription().cStr());
  }
  return {};
}

} // namespace

std::string encode_page(runtime::shard_id shard, const runtime::shard_page& page) {
  capnp::MallocMessageBuilder msg;
  fill_page(msg.initRoot<schema::ShardPage>(), shard, page.entries, page.next);
  return packed(msg);
}

caf::expected<runtime::shard_page> decode_page(std::string_view bytes, runtime::shard_id shard,
                                               uint32_t shard_count) {
  runtime::shard_page page;
  auto err = read_message<schema::ShardPage>(bytes, true, "shard page", [&](auto p) {
    page = read_page(p, shard, shard_count);
  });
  if (err)
    return err;
  return page;
}

std::string encode_replica_batches(const std::vector<replica_part>& parts) {
  capnp::MallocMessageBuilder msg;
  auto list = msg.initRoot<schema::ReplicaBatches>().initBatches(
    static_cast<unsigned>(parts.size()));
  for (unsigned i = 0; i < list.size(); ++i) {
    const auto& part = parts[i];
    list[i].setShard(part.shard);
    list[i].setEpoch(part.epoch);
    list[i].setSeq(part.seq);
    auto changes = list[i].initChanges(static_cast<unsigned>(part.batches.size()));
    for (unsigned k = 0; k < changes.size(); ++k)
      fill_page(changes[k], runtime::shard_id{part.shard}, *part.batches[k], std::string{});
  }
  return flat(msg);
}

caf::expected<std::vector<replica_batch>> decode_replica_batches(std::string_view bytes,
                                                                 uint32_t shard_count) {
  std::vector<replica_batch> out;
  auto err = read_message<schema::ReplicaBatches>(bytes, false, "replica batch", [&](auto root) {
    for (auto b : root.getBatches()) {
      KJ_REQUIRE(b.getShard() < shard_count, "a shard out of range");
      replica_batch r{b.getShard(), b.getEpoch(), b.getSeq(), {}};
      for (auto c : b.getChanges())
        r.changes.push_back(
          std::move(read_page(c, runtime::shard_id{r.shard}, shard_count).entries));
      out.push_back(std::move(r));
    }
  });
  if (err)
    return err;
  return out;
}

std::string encode_replica_acks(const std::vector<replica_ack>& acks) {
  capnp::MallocMessageBuilder msg;
  auto list = msg.initRoot<schema::ReplicaAcks>().initAcks(static_cast<unsigned>(acks.size()));
  for (unsigned i = 0; i < list.size(); ++i) {
    list[i].setShard(acks[i].shard);
    list[i].setEpoch(acks[i].epoch);
    list[i].setSeq(acks[i].seq);
    list[i].setRefused(text(acks[i].refused));
    list[i].setCaughtUp(acks[i].caught_up);
    list[i].setGeneration(acks[i].generation);
  }
  return flat(msg);
}

caf::expected<std::vector<replica_ack>> decode_replica_acks(std::string_view bytes) {
  std::vector<replica_ack> out;
  auto err = read_message<schema::ReplicaAcks>(bytes, false, "replica acknowledgement", [&](auto root) {
    for (auto a : root.getAcks())
      out.push_back({a.getShard(), a.getEpoch(), a.getSeq(), str(a.getRefused()), a.getCaughtUp(),
                     a.getGeneration()});
  });
  if (err)
    return err;
  return out;
}

} // namespace twin::cluster
