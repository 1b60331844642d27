#include "twin/runtime/record.hpp"

#include <array>
#include <chrono>
#include <cstring>
#include <vector>

#if defined(__SSSE3__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <kj/io.h>
#include <kj/array.h>
#include <kj/debug.h>
#include <kj/exception.h>

#include "capnp_values.hpp"
#include "record_codec.hpp"
#include "twin/runtime/errc.hpp"
#include "twin/schema/twin.capnp.h"

namespace twin::runtime {

using namespace capn;

namespace {

constexpr const char* kind_names[] = {"component", "asset", "system", "process"};
constexpr const char* severity_names[] = {"ok", "warning", "critical"};

// Untrusted bytes get tight limits: a twin record is small.
constexpr uint64_t max_record_words = 8u << 20;  // 64 MiB
constexpr int max_nesting = 32;
// ReportedMeta.source of a property without metadata.
constexpr uint32_t no_source = 0xffffffff;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "Cap'n Proto's byte order is little-endian, and so is the packer's word view");

uint64_t load_word(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

#if defined(__SSSE3__) && defined(__x86_64__)
/// For each tag, the byte shuffle that gathers the bytes its set bits name to the front.
struct gather_table {
  uint8_t index[256][8];
  constexpr gather_table() : index{} {
    for (int tag = 0; tag < 256; ++tag) {
      int k = 0;
      for (int i = 0; i < 8; ++i)
        if ((tag & (1 << i)) != 0)
          index[tag][k++] = static_cast<uint8_t>(i);
      while (k < 8)
        index[tag][k++] = 0x80;  // a shuffle index with bit 7 set yields zero
    }
  }
};
constexpr gather_table gather{};
#endif

/// Writes the bytes of `w` that `tag` names (its nonzero bytes) to `out`, in order, and
/// returns the end; it may write up to 8 bytes.
uint8_t* put_nonzero_bytes(uint64_t w, uint8_t tag, uint8_t* out) {
#if defined(__SSSE3__) && defined(__x86_64__)
  auto shuffle = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(gather.index[tag]));
  auto bytes = _mm_shuffle_epi8(_mm_cvtsi64_si128(static_cast<long long>(w)), shuffle);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), bytes);
  return out + __builtin_popcount(tag);
#else
  uint8_t bytes[8];
  std::memcpy(bytes, &w, 8);
  for (int i = 0; i < 8; ++i) {
    *out = bytes[i];
    out += bytes[i] != 0;
  }
  return out;
#endif
}

/// Packs `n` words from `in` into `out` as Cap'n Proto's packing does (the same choices
/// as capnp::writePackedMessage, a word at a time): a tag byte whose bit i says that byte
/// i of the word is not zero, then those bytes; a zero word is followed by the count of
/// the zero words after it, a word without zeros by the count of the following words
/// with at most one zero, which are copied as they are. Returns the end of the output,
/// which needs room for 10 bytes per word.
uint8_t* pack_words(const uint8_t* in, size_t n, uint8_t* out) {
  constexpr uint64_t high_bits = 0x8080808080808080ull;
  // Bit 7 of each byte: the byte is not zero.
  auto nonzero = [](uint64_t w) {
    return (((w & ~high_bits) + ~high_bits) | w) & high_bits;
  };
  // The high bits of the eight bytes gathered into one byte, byte 0 in bit 0.
  auto tag_of = [&](uint64_t w) {
    return static_cast<uint8_t>((nonzero(w) >> 7) * 0x0102040810204080ull >> 56);
  };
  const uint8_t* end = in + n * 8;
  auto run_limit = [&] { return in + std::min<size_t>((end - in) / 8, 255) * 8; };
  while (in < end) {
    uint64_t w = load_word(in);
    in += 8;
    uint8_t tag = tag_of(w);
    *out++ = tag;
    out = put_nonzero_bytes(w, tag, out);
    if (tag == 0) {
      const uint8_t* limit = run_limit();
      const uint8_t* run = in;
      while (in < limit && load_word(in) == 0)
        in += 8;
      *out++ = static_cast<uint8_t>((in - run) / 8);
    } else if (tag == 0xff) {
      // Words with at most one zero byte are cheaper copied than tagged.
      const uint8_t* limit = run_limit();
      const uint8_t* run = in;
      while (in < limit) {
        uint64_t zeros = ~nonzero(load_word(in)) & high_bits;
        if ((zeros & (zeros - 1)) != 0)
          break;  // two zero bytes or more
        in += 8;
      }
      auto bytes = static_cast<size_t>(in - run);
      *out++ = static_cast<uint8_t>(bytes / 8);
      std::memcpy(out, run, bytes);
      out += bytes;
    }
  }
  return out;
}

/// Serializes a message's segments packed: the segment table, then the segments, each
/// packed on its own as capnp::writePackedMessage does. Allocates only the result (after
/// a thread's first records).
std::string pack(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  size_t words = 0;
  for (auto s : segments)
    words += s.size();
  // The table: the segment count - 1 and each segment's size, 32 bits each, in words.
  thread_local std::vector<uint32_t> table;
  table.assign((segments.size() + 2) & ~size_t{1}, 0);
  table[0] = static_cast<uint32_t>(segments.size() - 1);
  for (size_t i = 0; i < segments.size(); ++i)
    table[i + 1] = static_cast<uint32_t>(segments[i].size());
  words += table.size() / 2;
  // This thread's buffer, or a bigger one for a big record; packed, a word takes at most
  // 10 bytes (itself, its tag and a run count).
  thread_local std::array<uint8_t, 16384> scratch;
  std::vector<uint8_t> big;
  uint8_t* buffer = scratch.data();
  if (words * 10 > scratch.size()) {
    big.resize(words * 10);
    buffer = big.data();
  }
  auto* end = pack_words(reinterpret_cast<const uint8_t*>(table.data()), table.size() / 2,
                         buffer);
  for (auto s : segments)
    end = pack_words(reinterpret_cast<const uint8_t*>(s.begin()), s.size(), end);
  return std::string{reinterpret_cast<const char*>(buffer), static_cast<size_t>(end - buffer)};
}

/// Lays out a single-segment Cap'n Proto message word by word, allocating in call order
/// as the builder does, so that the same calls give the builder's bytes.
class flat_message {
public:
  /// Starts a message in `buffer` (whose memory it reuses).
  explicit flat_message(std::vector<uint64_t>& buffer) : w_(buffer) {
    w_.assign(128, 0);  // zeroed, as the builder's segment: most records fit
  }

  size_t alloc(size_t words) {
    auto at = next_;
    next_ += words;
    if (next_ > w_.size())
      w_.resize(std::max(next_, 2 * w_.size()));  // the new words zeroed too
    return at;
  }
  void set_struct(size_t ptr, size_t target, uint16_t data_words, uint16_t pointers) {
    w_[ptr] = offset_bits(ptr, target) | uint64_t{data_words} << 32 | uint64_t{pointers} << 48;
  }
  /// A list of `count` elements of size code `size` (2: bytes, 6: pointers).
  void set_list(size_t ptr, size_t target, unsigned size, size_t count) {
    w_[ptr] = offset_bits(ptr, target) | 1 | uint64_t{size} << 32 | uint64_t{count} << 35;
  }
  void set_text(size_t ptr, std::string_view s) {
    auto at = alloc(s.size() / 8 + 1);  // with its NUL
    std::memcpy(&w_[at], s.data(), s.size());
    set_list(ptr, at, 2, s.size() + 1);
  }
  /// A list of `count` structs; returns the first one's position.
  size_t init_struct_list(size_t ptr, size_t count, uint16_t data_words, uint16_t pointers) {
    auto per = size_t{data_words} + pointers;
    auto tag = alloc(1 + count * per);
    w_[tag] = uint64_t{count} << 2 | uint64_t{data_words} << 32 | uint64_t{pointers} << 48;
    set_list(ptr, tag, 7, count * per);
    return tag + 1;
  }
  uint64_t& operator[](size_t i) { return w_[i]; }
  kj::ArrayPtr<const capnp::word> words() const {
    return {reinterpret_cast<const capnp::word*>(w_.data()), next_};
  }

private:
  static uint64_t offset_bits(size_t ptr, size_t target) {
    auto offset = static_cast<int32_t>(target) - static_cast<int32_t>(ptr) - 1;
    return uint64_t{static_cast<uint32_t>(offset) << 2};
  }

  std::vector<uint64_t>& w_;
  size_t next_ = 1;  ///< word 0: the root pointer
};

} // namespace

const char* to_string(twin_kind x) {
  return kind_names[static_cast<int>(x)];
}

const char* to_string(severity x) {
  return severity_names[static_cast<int>(x)];
}

bool from_string(std::string_view text, twin_kind& out) {
  for (int i = 0; i < 4; ++i)
    if (text == kind_names[i]) {
      out = static_cast<twin_kind>(i);
      return true;
    }
  return false;
}

bool from_string(std::string_view text, severity& out) {
  for (int i = 0; i < 3; ++i)
    if (text == severity_names[i]) {
      out = static_cast<severity>(i);
      return true;
    }
  return false;
}

value_map delta(const twin_record& rec) {
  value_map out;
  for (const auto& [k, v] : rec.desired) {
    auto i = rec.reported.find(k);
    if (i == rec.reported.end() || i->second != v)
      out.emplace(k, v);
  }
  return out;
}

bool is_flat(const record_frame& f, const reported_entry* reported, size_t count) {
  if (!f.children.empty() || !f.relationships.empty() || !f.desired.empty()
      || !f.alerts.empty())
    return false;
  for (size_t i = 0; i < count; ++i) {
    auto k = reported[i].v->type();
    if (k == value::kind::list || k == value::kind::map)
      return false;
  }
  return true;
}

std::string encode_flat(const record_frame& f, const reported_entry* reported, size_t count,
                        source_list& sources) {
  // Allocated in the order of encode_with_builder. Struct sizes (data words, pointers):
  // TwinRecord 4, 11; Entry 0, 2; Value 2, 1; ReportedMeta 2, 0; ChildState 1, 3;
  // Relationship 0, 2; Alert 2, 1.
  sources.clear();
  thread_local std::vector<uint64_t> buffer;
  flat_message m{buffer};
  auto root = m.alloc(15);
  m.set_struct(0, root, 4, 11);
  auto ptr = [&](size_t i) { return root + 4 + i; };
  m.set_text(ptr(0), f.id.str());
  m.set_text(ptr(1), f.type);
  m[root] = static_cast<uint16_t>(f.kind);
  m.set_text(ptr(2), f.parent.str());
  m.init_struct_list(ptr(3), 0, 1, 3);  // children
  m.init_struct_list(ptr(4), 0, 0, 2);  // relationships
  auto rep = m.init_struct_list(ptr(5), count, 0, 2);
  auto meta = m.init_struct_list(ptr(9), count, 2, 0);
  for (size_t i = 0; i < count; ++i) {
    auto entry = rep + 2 * i;
    m.set_text(entry, *reported[i].name);
    auto v = m.alloc(3);
    m.set_struct(entry + 1, v, 2, 1);
    const auto& x = *reported[i].v;
    switch (x.type()) {
      case value::kind::null: break;
      case value::kind::boolean: m[v] = 1 | uint64_t{x.as_bool()} << 16; break;
      case value::kind::integer:
        m[v] = 2;
        m[v + 1] = static_cast<uint64_t>(x.as_int());
        break;
      case value::kind::real: {
        m[v] = 3;
        auto d = x.as_double();
        std::memcpy(&m[v + 1], &d, 8);
        break;
      }
      case value::kind::string:
        m[v] = 4;
        m.set_text(v + 2, x.as_string());
        break;
      case value::kind::list:
      case value::kind::map: break;  // not flat
    }
    auto md = meta + 2 * i;
    if (reported[i].source != nullptr) {
      m[md] = static_cast<uint64_t>(reported[i].updated_ms);
      m[md + 1] = sources.index_of(reported[i].source);
    } else {
      m[md + 1] = no_source;
    }
  }
  const auto& used = sources.sources();
  auto list = m.alloc(used.size());
  m.set_list(ptr(10), list, 6, used.size());
  for (size_t i = 0; i < used.size(); ++i)
    m.set_text(list + i, *used[i]);
  m.init_struct_list(ptr(6), 0, 0, 2);  // desired
  m.init_struct_list(ptr(8), 0, 2, 1);  // alerts
  m[root + 1] = f.version;
  m[root + 2] = static_cast<uint64_t>(f.created_ms);
  m[root + 3] = static_cast<uint64_t>(f.updated_ms);
  auto segment = m.words();
  return pack(kj::arrayPtr(&segment, 1));
}

std::string encode(const record_frame& f, const reported_entry* reported, size_t count) {
  thread_local source_list sources;
  if (is_flat(f, reported, count))
    return encode_flat(f, reported, count, sources);
  return encode_with_builder(f, reported, count, sources);
}

std::string encode_with_builder(const record_frame& f, const reported_entry* reported,
                                size_t count, source_list& sources) {
  // Most records fit in this thread's first segment, which the builder zeroes again
  // (only the words it used) when it is destroyed: no allocation, no 2 KiB memset.
  thread_local std::array<capnp::word, 512> first_segment{};
  capnp::MallocMessageBuilder msg{kj::arrayPtr(first_segment.data(), first_segment.size())};
  auto r = msg.initRoot<schema::TwinRecord>();
  r.setId(text(f.id.str()));
  r.setType(text(f.type));
  r.setKind(to_schema(f.kind));
  r.setParent(text(f.parent.str()));
  auto children = r.initChildren(static_cast<unsigned>(f.children.size()));
  for (unsigned i = 0; i < f.children.size(); ++i) {
    const auto& c = f.children[i];
    children[i].setId(text(c.id.str()));
    write_entries(children[i].initValues(static_cast<unsigned>(c.values.size())), c.values);
    children[i].setHealth(to_schema(c.health));
    children[i].setType(text(c.type));
  }
  auto rels = r.initRelationships(static_cast<unsigned>(f.relationships.size()));
  for (unsigned i = 0; i < f.relationships.size(); ++i) {
    rels[i].setName(text(f.relationships[i].name));
    rels[i].setTarget(text(f.relationships[i].target.str()));
  }
  auto rep = r.initReported(static_cast<unsigned>(count));
  auto meta = r.initReportedMeta(static_cast<unsigned>(count));
  sources.clear();
  for (size_t i = 0; i < count; ++i) {
    rep[i].setKey(text(*reported[i].name));
    write_value(rep[i].initValue(), *reported[i].v);
    if (reported[i].source != nullptr) {
      meta[i].setUpdatedMs(reported[i].updated_ms);
      meta[i].setSource(sources.index_of(reported[i].source));
    } else {
      meta[i].setSource(no_source);
    }
  }
  const auto& used = sources.sources();
  auto source_texts = r.initSources(static_cast<unsigned>(used.size()));
  for (unsigned i = 0; i < used.size(); ++i)
    source_texts.set(i, text(*used[i]));
  write_entries(r.initDesired(static_cast<unsigned>(f.desired.size())), f.desired);
  auto alerts = r.initAlerts(static_cast<unsigned>(f.alerts.size()));
  for (unsigned j = 0; j < f.alerts.size(); ++j) {
    alerts[j].setName(text(f.alerts[j].name));
    alerts[j].setSeverity(to_schema(f.alerts[j].level));
    alerts[j].setSinceMs(f.alerts[j].since_ms);
  }
  r.setVersion(f.version);
  r.setCreatedMs(f.created_ms);
  r.setUpdatedMs(f.updated_ms);
  return pack(msg.getSegmentsForOutput());
}

record_view::record_view(const twin_record& rec)
  : frame{rec.id,       rec.type,    rec.kind,    rec.parent,     rec.children,
          rec.relationships, rec.desired, rec.alerts, rec.version, rec.created_ms,
          rec.updated_ms} {
  reported.reserve(rec.reported.size());
  for (const auto& [k, v] : rec.reported) {
    reported_entry e{&k, &v};
    if (auto m = rec.metadata.find(k); m != rec.metadata.end()) {
      e.updated_ms = m->second.updated_ms;
      e.source = &m->second.source;
    }
    reported.push_back(e);
  }
}

std::string encode(const twin_record& rec) {
  record_view v{rec};
  return encode(v.frame, v.reported.data(), v.reported.size());
}

caf::expected<twin_record> decode_record(std::string_view bytes) {
  if (bytes.empty())
    return make_error(runtime_errc::store_corrupt, "a stored twin record is empty");
  twin_record rec;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = max_record_words;
    opts.nestingLimit = max_nesting;
    kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
      reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()}};
    capnp::PackedMessageReader reader{in, opts};
    auto r = reader.getRoot<schema::TwinRecord>();
    rec.id = twin_id::trusted(str(r.getId()));
    rec.type = str(r.getType());
    rec.kind = from_schema(r.getKind());
    rec.parent = twin_id::trusted(str(r.getParent()));
    for (auto c : r.getChildren())
      rec.children.push_back(
        child_state{twin_id::trusted(str(c.getId())), read_entries(c.getValues()),
                    from_schema(c.getHealth()), str(c.getType())});
    for (auto rel : r.getRelationships())
      rec.relationships.push_back(
        relationship{str(rel.getName()), twin_id::trusted(str(rel.getTarget()))});
    rec.reported = read_entries(r.getReported());
    rec.desired = read_entries(r.getDesired());
    for (auto m : r.getMetadata())
      rec.metadata.emplace(str(m.getName()),
                           property_meta{m.getUpdatedMs(), str(m.getSource())});
    auto reported = r.getReported();
    auto meta = r.getReportedMeta();
    auto sources = r.getSources();
    KJ_REQUIRE(meta.size() == 0 || meta.size() == reported.size(),
               "reportedMeta does not match reported");
    for (unsigned i = 0; i < meta.size(); ++i) {
      auto s = meta[i].getSource();
      if (s == no_source)
        continue;
      KJ_REQUIRE(s < sources.size(), "a metadata source index is out of range");
      rec.metadata.emplace(str(reported[i].getKey()),
                           property_meta{meta[i].getUpdatedMs(), str(sources[s])});
    }
    for (auto a : r.getAlerts())
      rec.alerts.push_back(
        alert_state{str(a.getName()), from_schema(a.getSeverity()), a.getSinceMs()});
    rec.version = r.getVersion();
    rec.created_ms = r.getCreatedMs();
    rec.updated_ms = r.getUpdatedMs();
  });
  KJ_IF_MAYBE (e, failure) {
    return make_error(runtime_errc::store_corrupt,
                      std::string{"a stored twin record cannot be decoded: "}
                        + e->getDescription().cStr());
  }
  return rec;
}

// A sample is a tag byte and its payload: 'n'; 'f'/'t'; 'i' or 'd' with 8 little-endian
// bytes; 's' with the string's bytes. Lists and maps have no history.
std::string encode_sample(const value& v) {
  std::string out;
  auto word = [&](uint64_t u) {
    for (int i = 0; i < 8; ++i)
      out += static_cast<char>((u >> (8 * i)) & 0xff);
  };
  switch (v.type()) {
    case value::kind::boolean:
      out = v.as_bool() ? "t" : "f";
      break;
    case value::kind::integer:
      out = "i";
      word(static_cast<uint64_t>(v.as_int()));
      break;
    case value::kind::real: {
      out = "d";
      uint64_t u;
      double d = v.as_double();
      std::memcpy(&u, &d, sizeof u);
      word(u);
      break;
    }
    case value::kind::string:
      out = "s" + v.as_string();
      break;
    default:
      out = "n";
  }
  return out;
}

caf::expected<value> decode_sample(std::string_view bytes) {
  auto word = [&] {
    uint64_t u = 0;
    for (int i = 7; i >= 0; --i)
      u = (u << 8) | static_cast<unsigned char>(bytes[1 + static_cast<size_t>(i)]);
    return u;
  };
  if (bytes.size() == 1 && (bytes[0] == 'n' || bytes[0] == 't' || bytes[0] == 'f'))
    return bytes[0] == 'n' ? value{} : value{bytes[0] == 't'};
  if (!bytes.empty() && bytes[0] == 's')
    return value{std::string{bytes.substr(1)}};
  if (bytes.size() == 9 && bytes[0] == 'i')
    return value{static_cast<int64_t>(word())};
  if (bytes.size() == 9 && bytes[0] == 'd') {
    uint64_t u = word();
    double d;
    std::memcpy(&d, &u, sizeof d);
    return value{d};
  }
  return make_error(runtime_errc::store_corrupt, "a stored history sample is malformed");
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace twin::runtime
