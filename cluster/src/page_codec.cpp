#include "page_codec.hpp"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
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

} // namespace

std::string encode_page(runtime::shard_id shard, const runtime::shard_page& page) {
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<schema::ShardPage>();
  const auto& b = page.entries;
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
  p.setNext(data(page.next));
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

caf::expected<runtime::shard_page> decode_page(std::string_view bytes, runtime::shard_id shard,
                                               uint32_t shard_count) {
  runtime::shard_page page;
  auto& b = page.entries;
  auto id_of = [&](capnp::Text::Reader t) {
    auto id = runtime::twin_id::parse(str(t));
    KJ_REQUIRE(static_cast<bool>(id), "an invalid twin id");
    KJ_REQUIRE(runtime::shard_of(*id, shard_count) == shard, "a twin of another shard");
    return std::move(*id);
  };
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = 64u << 20;  // 512 MiB: a page is bounded by its sender
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::PackedMessageReader reader{in, opts};
    auto p = reader.getRoot<schema::ShardPage>();
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
  });
  KJ_IF_MAYBE (e, failure) {
    return runtime::make_error(runtime::runtime_errc::invalid_argument,
                               std::string{"a malformed shard page: "} + e->getDescription().cStr());
  }
  return page;
}

} // namespace twin::cluster
