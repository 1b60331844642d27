// Twin ids, values, the record codec and expressions.

#include <cmath>
#include <functional>
#include <random>

#include <capnp/serialize-packed.h>
#include <gtest/gtest.h>
#include <kj/io.h>

#include "record_codec.hpp"
#include "test_support.hpp"
#include "twin/runtime/expression.hpp"
#include "twin/runtime/json.hpp"
#include "twin/runtime/record.hpp"
#include "twin/runtime/suggest.hpp"
#include "twin/schema/twin.capnp.h"

namespace twin::test {
namespace {

TEST(twin_id, accepts_the_documented_forms) {
  for (auto s : {"factory:motor-1", "a:b", "plant.eu-1:Line_3.robot~2", "0:0"}) {
    auto x = twin_id::parse(s);
    ASSERT_TRUE(x) << s;
    EXPECT_EQ(x->str(), s);
  }
  auto x = twin_id::parse("factory:motor-1");
  EXPECT_EQ(x->ns(), "factory");
  EXPECT_EQ(x->name(), "motor-1");
}

TEST(twin_id, rejects_everything_else_with_a_reason) {
  for (auto s : {"", "nocolon", ":name", "ns:", "Upper:x", "-ns:x", "ns:a b", "ns:a/b",
                 "ns:a:b", "n_s:x"}) {
    auto x = twin_id::parse(s);
    ASSERT_FALSE(x) << s;
    EXPECT_EQ(error_code(x.error()), runtime_errc::invalid_id);
    EXPECT_NE(error_message(x.error()).find("invalid twin id"), std::string::npos);
  }
  EXPECT_FALSE(twin_id::parse(std::string(64, 'a') + ":x"));
  EXPECT_TRUE(twin_id::parse(std::string(63, 'a') + ":x"));
  EXPECT_FALSE(twin_id::parse("a:" + std::string(201, 'x')));
  EXPECT_TRUE(twin_id::parse("a:" + std::string(200, 'x')));
}

TEST(value, compares_numbers_by_value) {
  EXPECT_EQ(value{int64_t{3}}, value{3.0});
  EXPECT_NE(value{3}, value{3.5});
  EXPECT_NE(value{"3"}, value{3});
  EXPECT_EQ(to_string(value{0.1}), "0.1");
  // Lists and maps compare by content, not by identity.
  value m1{value_map{{"a", value{1}}}};
  value m1d{value_map{{"a", value{1.0}}}};
  value m2{value_map{{"a", value{2}}}};
  EXPECT_EQ(m1, m1d);
  EXPECT_NE(m1, m2);
  value l1{value_list{1, "x"}};
  value l2{value_list{1, "x"}};
  EXPECT_EQ(l1, l2);
  EXPECT_NE(value{value_list{1}}, value{value_map{}});
  EXPECT_EQ(to_string(value{value_map{{"a", value{value_list{1, true, nullptr}}}}}),
            R"({"a":[1,true,null]})");
}

twin_record sample_record() {
  twin_record r;
  r.id = id("f:m1");
  r.type = "motor";
  r.kind = twin_kind::component;
  r.parent = id("f:r1");
  r.children.push_back(child_state{id("f:c1"), {{"t", value{1.5}}}, severity::warning, "x"});
  r.relationships.push_back(relationship{"feeds", id("f:m2")});
  r.reported = {{"temperature", value{71.25}}, {"on", value{true}}, {"name", value{"m"}},
                {"n", value{int64_t{-7}}},
                {"cfg", value{value_map{{"l", value{value_list{1, 2}}}, {"z", value{}}}}}};
  r.desired = {{"rpm", value{1200.0}}};
  r.metadata = {{"temperature", property_meta{1700000000123, "telemetry"}}};
  r.alerts.push_back(alert_state{"overheat", severity::critical, 42});
  r.version = 17;
  r.created_ms = 1;
  r.updated_ms = 2;
  return r;
}

TEST(device_telemetry, takes_an_object_of_values_with_an_optional_ts) {
  auto t = device_telemetry_from_json(R"({"level": 4.5, "on": true, "ts": 1700000000000})");
  ASSERT_TRUE(t) << error_message(t.error());
  EXPECT_EQ(t->ts_ms, 1700000000000);
  EXPECT_EQ(t->values, (value_map{{"level", value{4.5}}, {"on", value{true}}}));
  auto no_ts = device_telemetry_from_json(R"({"level": 1, "ts": null})");
  ASSERT_TRUE(no_ts);
  EXPECT_EQ(no_ts->ts_ms, 0);
}

TEST(device_telemetry, refuses_everything_else_with_a_reason) {
  std::vector<std::string> bad_payloads{
    "", "{", "[1]", "42", "{}", R"({"ts": 5})", R"({"a": 1, "ts": 0})", R"({"a": 1, "ts": -5})",
    R"({"a": 1, "ts": 1.5})", R"({"a": 1, "ts": "now"})",
    R"({"a": 1, "ts": 18446744073709551615})", R"({"a": 1e400})",
    R"({"a": 18446744073709551615})",
    "{\"a\": " + std::string(40, '[') + std::string(40, ']') + "}"};
  for (const auto& bad : bad_payloads) {
    auto t = device_telemetry_from_json(bad);
    ASSERT_FALSE(t) << bad;
    EXPECT_EQ(error_code(t.error()), runtime_errc::invalid_argument) << bad;
    EXPECT_FALSE(error_message(t.error()).empty());
  }
}

TEST(device_telemetry, takes_its_time_as_ms_or_iso_8601) {
  auto t = device_telemetry_from_json(R"({"level": 1, "ts": "2024-05-01T14:00:00.5+02:00"})");
  ASSERT_TRUE(t) << error_message(t.error());
  EXPECT_EQ(t->ts_ms, 1714564800500);
  auto bad = device_telemetry_from_json(R"({"level": 1, "ts": "1 May"})");
  ASSERT_FALSE(bad);
  EXPECT_NE(error_message(bad.error()).find("ISO 8601"), std::string::npos);
}

TEST(times, are_ms_since_the_epoch_or_iso_8601_dates_and_times) {
  EXPECT_EQ(parse_time("1714564800000"), 1714564800000);
  EXPECT_EQ(parse_time("2024-05-01T12:00:00Z"), 1714564800000);
  EXPECT_EQ(parse_time("2024-05-01T14:00:00+02:00"), 1714564800000);
  EXPECT_EQ(parse_time("2024-05-01T12:00:00.250Z"), 1714564800250);
  EXPECT_EQ(parse_time("2024-05-01"), 1714521600000);
  for (auto bad : {"", "yesterday", "2024-13-01", "2024-02-30", "2024-05-01T12:00:00",
                   "2024-05-01T25:00:00Z", "12:00", "1e3", "2024-05-01T12:00:00Zjunk"})
    EXPECT_FALSE(parse_time(bad)) << bad;
}

TEST(json_text, says_where_and_why_a_document_is_not_json) {
  auto cut = parse_json(R"({"a": )", "the body");
  ASSERT_FALSE(cut);
  auto msg = error_message(cut.error());
  EXPECT_EQ(msg.rfind("the body is not valid JSON: at line 1, column ", 0), 0u) << msg;
  auto huge = parse_json(R"({"a": 1e400})", "the body");
  ASSERT_FALSE(huge);
  EXPECT_NE(error_message(huge.error()).find("number overflow parsing '1e400'"),
            std::string::npos)
    << error_message(huge.error());
  auto deep = parse_json(std::string(100, '[') + std::string(100, ']'), "the request");
  ASSERT_FALSE(deep);
  EXPECT_NE(error_message(deep.error()).find("the request nests deeper than"), std::string::npos);
  auto long_token = parse_json("\"" + std::string(100000, 'x'), "the body");
  ASSERT_FALSE(long_token);
  EXPECT_LT(error_message(long_token.error()).size(), 300u);
  auto fine = parse_json(R"({"a": [1, 2.5, "x"]})", "the body");
  ASSERT_TRUE(fine);
  EXPECT_EQ((*fine)["a"][1], 2.5);
}

TEST(suggest, names_the_nearest_known_name_or_lists_them) {
  std::vector<std::string> types{"line", "motor", "plant", "pump", "robot"};
  EXPECT_EQ(nearest_name("pmp", types), "pump");
  EXPECT_EQ(nearest_name("Moter", types), "motor");
  EXPECT_EQ(nearest_name("temprature", {"temperature", "rpm"}), "temperature");
  EXPECT_EQ(nearest_name("xyz", types), "");
  EXPECT_EQ(nearest_name("", types), "");
  EXPECT_EQ(suggestion("robt", types), " (did you mean 'robot'?)");
  EXPECT_EQ(suggestion("gadget", types), " (known: line, motor, plant, pump, robot)");
  EXPECT_EQ(suggestion("gadget", types, 2), " (known: line, motor, ... 3 more)");
  EXPECT_EQ(suggestion("gadget", {}), "");
}

TEST(record_codec, round_trips_every_field) {
  auto r = sample_record();
  auto back = decode_record(encode(r));
  ASSERT_TRUE(back) << error_message(back.error());
  EXPECT_EQ(back->id, r.id);
  EXPECT_EQ(back->type, r.type);
  EXPECT_EQ(back->kind, r.kind);
  EXPECT_EQ(back->parent, r.parent);
  ASSERT_EQ(back->children.size(), 1u);
  EXPECT_EQ(back->children[0].id, id("f:c1"));
  EXPECT_EQ(back->children[0].health, severity::warning);
  EXPECT_EQ(back->children[0].type, "x");
  EXPECT_EQ(back->children[0].values, r.children[0].values);
  EXPECT_EQ(back->relationships[0].target, id("f:m2"));
  EXPECT_EQ(back->reported, r.reported);
  EXPECT_EQ(back->desired, r.desired);
  EXPECT_EQ(back->metadata.at("temperature").updated_ms, 1700000000123);
  EXPECT_EQ(back->metadata.at("temperature").source, "telemetry");
  EXPECT_EQ(back->metadata.size(), 1u);  // the others were set without metadata
  EXPECT_EQ(back->alerts[0].name, "overheat");
  EXPECT_EQ(back->alerts[0].level, severity::critical);
  EXPECT_EQ(back->version, 17u);
  EXPECT_EQ(back->created_ms, 1);
  EXPECT_EQ(back->updated_ms, 2);
}

/// A packed record of twin f:m1 with reported rpm 1200 and temperature 71.5, finished
/// by `fill`.
std::string packed_record(const std::function<void(schema::TwinRecord::Builder)>& fill) {
  capnp::MallocMessageBuilder msg;
  auto r = msg.initRoot<schema::TwinRecord>();
  r.setId("f:m1");
  r.setType("motor");
  auto rep = r.initReported(2);
  rep[0].setKey("rpm");
  rep[0].initValue().setDouble(1200);
  rep[1].setKey("temperature");
  rep[1].initValue().setDouble(71.5);
  fill(r);
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, msg);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

TEST(record_codec, reads_the_metadata_of_records_that_list_it_by_name) {
  // Records written before `reportedMeta`: one PropertyMeta per property, by name.
  auto back = decode_record(packed_record([](auto r) {
    auto meta = r.initMetadata(1);
    meta[0].setName("temperature");
    meta[0].setUpdatedMs(1700000000123);
    meta[0].setSource("dev-7");
  }));
  ASSERT_TRUE(back) << error_message(back.error());
  EXPECT_EQ(back->reported.at("temperature"), value{71.5});
  ASSERT_EQ(back->metadata.size(), 1u);
  EXPECT_EQ(back->metadata.at("temperature").updated_ms, 1700000000123);
  EXPECT_EQ(back->metadata.at("temperature").source, "dev-7");
}

/// Unpacks `packed` with Cap'n Proto and packs it again the way capnp::writePackedMessage
/// does: the segment table and each segment on their own.
std::string repack_with_capnp(const std::string& packed, uint32_t& segments) {
  kj::ArrayInputStream in{kj::ArrayPtr<const kj::byte>{
    reinterpret_cast<const kj::byte*>(packed.data()), packed.size()}};
  capnp::_::PackedInputStream unpacked{in};
  kj::VectorOutputStream out;
  capnp::_::PackedOutputStream packer{out};
  // Read and written piece by piece: a packed run never crosses a segment boundary.
  uint32_t first[2];
  unpacked.read(first, 8);
  segments = first[0] + 1;
  std::vector<uint32_t> table(((segments + 2) & ~1u));
  table[0] = first[0];
  table[1] = first[1];
  if (table.size() > 2)
    unpacked.read(table.data() + 2, (table.size() - 2) * 4);
  packer.write(table.data(), table.size() * 4);
  for (uint32_t i = 0; i < segments; ++i) {
    std::vector<kj::byte> segment(table[i + 1] * 8u);
    unpacked.read(segment.data(), segment.size());
    packer.write(segment.data(), segment.size());
  }
  kj::byte rest;
  EXPECT_EQ(unpacked.tryRead(&rest, 1, 1), 0u);
  auto bytes = out.getArray();
  return std::string{reinterpret_cast<const char*>(bytes.begin()), bytes.size()};
}

TEST(record_codec, packs_as_capnp_does) {
  // Records with runs of zero words (nulls) and of words without zeros (long strings),
  // also longer than one run can count (255 words), and records over several segments.
  // The repacked bytes show the same packing choices; decoding shows the same content.
  std::mt19937_64 rng{7};
  int multi_segment = 0;
  int long_runs = 0;
  for (int round = 0; round < 300; ++round) {
    auto r = sample_record();
    r.version = rng();
    bool long_run = false;
    auto n = static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      auto name = "p" + std::to_string(i);
      switch (rng() % 5) {
        case 0: r.reported[name] = value{}; break;
        case 1: r.reported[name] = value{static_cast<int64_t>(rng() % 3)}; break;
        case 2: r.reported[name] = value{static_cast<double>(rng() % 1000) / 7.0}; break;
        case 3: {
          auto size = rng() % 3000;
          long_run = long_run || size > 8 * 260;
          r.reported[name] = value{std::string(size, static_cast<char>('a' + rng() % 26))};
          break;
        }
        default: {
          auto size = rng() % 700;
          long_run = long_run || size > 260;  // two zero words per null
          r.reported[name] = value{value_list(size, value{})};
          break;
        }
      }
      if (rng() % 2 == 0)
        r.metadata[name] = property_meta{static_cast<int64_t>(rng() % 2000000000000),
                                         "source-" + std::to_string(rng() % 3)};
    }
    auto bytes = encode(r);
    uint32_t segments = 0;
    ASSERT_EQ(bytes, repack_with_capnp(bytes, segments)) << "round " << round;
    multi_segment += segments > 1 ? 1 : 0;
    long_runs += long_run ? 1 : 0;
    auto back = decode_record(bytes);
    ASSERT_TRUE(back) << error_message(back.error());
    EXPECT_EQ(back->reported, r.reported);
    EXPECT_EQ(back->version, r.version);
    ASSERT_EQ(back->metadata.size(), r.metadata.size());
    for (const auto& [k, m] : r.metadata) {
      EXPECT_EQ(back->metadata.at(k).updated_ms, m.updated_ms);
      EXPECT_EQ(back->metadata.at(k).source, m.source);
    }
  }
  EXPECT_GT(multi_segment, 10);
  EXPECT_GT(long_runs, 10);
}

TEST(record_codec, writes_flat_records_as_the_builder_does) {
  // Records without children, relationships, desired state or alerts, with scalar and
  // string values, some with metadata from a few sources: the word-by-word encoder
  // gives the builder's bytes.
  std::mt19937_64 rng{11};
  std::vector<std::string> sources{"telemetry", "api", "dev-1234567890", ""};
  for (int round = 0; round < 500; ++round) {
    twin_record r;
    r.id = twin_id::trusted("ns:" + std::string(rng() % 40, 'x'));
    r.type = std::string(rng() % 20, 't');
    r.kind = static_cast<twin_kind>(rng() % 4);
    if (rng() % 2 == 0)
      r.parent = twin_id::trusted("ns:parent-" + std::to_string(rng()));
    auto n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      auto name = std::string(1 + rng() % 20, static_cast<char>('a' + i));
      switch (rng() % 6) {
        case 0: r.reported[name] = value{}; break;
        case 1: r.reported[name] = value{rng() % 2 == 0}; break;
        case 2: r.reported[name] = value{static_cast<int64_t>(rng())}; break;
        case 3: r.reported[name] = value{static_cast<double>(rng() % 100000) / 7.0}; break;
        case 4: r.reported[name] = value{-0.0}; break;
        default: r.reported[name] = value{std::string(rng() % 100, 's')}; break;
      }
      if (rng() % 3 != 0)
        r.metadata[name] = property_meta{static_cast<int64_t>(rng() % 2000000000000),
                                         sources[rng() % sources.size()]};
    }
    r.version = rng() % 3 == 0 ? 0 : rng();
    r.created_ms = static_cast<int64_t>(rng() % 2000000000000);
    r.updated_ms = r.created_ms + 1;
    record_view v{r};
    const auto* entries = v.reported.data();
    auto n_entries = v.reported.size();
    ASSERT_TRUE(is_flat(v.frame, entries, n_entries));
    source_list a;
    source_list b;
    auto flat = encode_flat(v.frame, entries, n_entries, a);
    ASSERT_EQ(flat, encode_with_builder(v.frame, entries, n_entries, b)) << round;
    auto back = decode_record(flat);
    ASSERT_TRUE(back) << error_message(back.error());
    EXPECT_EQ(back->reported, r.reported);
    EXPECT_EQ(back->version, r.version);
  }
}

TEST(record_codec, writes_big_flat_records_in_one_segment) {
  // Beyond the builder's first segment (4 KiB) the builder splits the message, the flat
  // layout does not: the bytes differ, the record read back is the same.
  twin_record r;
  r.id = twin_id::trusted("ns:big");
  r.type = "note";
  for (int i = 0; i < 40; ++i)
    r.reported["p" + std::to_string(i)] = value{std::string(100 + 37 * i, 'n')};
  r.metadata["p3"] = property_meta{1700000000000, "telemetry"};
  record_view v{r};
  ASSERT_TRUE(is_flat(v.frame, v.reported.data(), v.reported.size()));
  auto back = decode_record(encode(r));
  ASSERT_TRUE(back) << error_message(back.error());
  EXPECT_EQ(back->reported, r.reported);
  EXPECT_EQ(back->metadata.at("p3").source, "telemetry");
}

TEST(record_codec, leaves_records_with_structure_to_the_builder) {
  auto r = sample_record();
  ASSERT_FALSE(r.children.empty());
  EXPECT_FALSE(is_flat(record_view{r}.frame, nullptr, 0));
  twin_record plain;
  record_view v{plain};
  EXPECT_TRUE(is_flat(v.frame, nullptr, 0));
  value list{value_list{value{1.0}}};
  const std::string name = "xs";
  reported_entry e{&name, &list};
  EXPECT_FALSE(is_flat(v.frame, &e, 1));
}

/// A record whose `reportedMeta` of `meta_count` entries is built by `fill`; its one
/// source is "dev-7".
std::string record_with_meta(
  const std::function<void(capnp::List<schema::ReportedMeta>::Builder)>& fill,
  unsigned meta_count) {
  return packed_record([&](auto r) {
    r.initSources(1).set(0, "dev-7");
    fill(r.initReportedMeta(meta_count));
  });
}

TEST(record_codec, refuses_metadata_that_does_not_fit_its_record) {
  auto good = decode_record(record_with_meta(
    [](auto meta) {
      meta[0].setSource(0xffffffff);
      meta[1].setSource(0);
      meta[1].setUpdatedMs(5);
    },
    2));
  ASSERT_TRUE(good) << error_message(good.error());
  EXPECT_EQ(good->metadata.size(), 1u);
  EXPECT_EQ(good->metadata.at("temperature").source, "dev-7");
  auto short_list = decode_record(record_with_meta([](auto meta) { meta[0].setSource(0); }, 1));
  ASSERT_FALSE(short_list);
  EXPECT_EQ(error_code(short_list.error()), runtime_errc::store_corrupt);
  auto bad_index = decode_record(record_with_meta(
    [](auto meta) {
      meta[0].setSource(0);
      meta[1].setSource(1);
    },
    2));
  ASSERT_FALSE(bad_index);
  EXPECT_EQ(error_code(bad_index.error()), runtime_errc::store_corrupt);
}

TEST(record_codec, rejects_garbage_without_crashing) {
  EXPECT_FALSE(decode_record(""));
  EXPECT_FALSE(decode_record("abc"));
  std::string junk(64, '\xff');
  auto r = decode_record(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(error_code(r.error()), runtime_errc::store_corrupt);
  auto good = encode(sample_record());
  auto truncated = good.substr(0, good.size() - 16);
  EXPECT_FALSE(decode_record(truncated));
}

TEST(json_text, writes_the_document_of_to_json) {
  auto r = sample_record();
  EXPECT_EQ(nlohmann::json::parse(to_json_text(r)), to_json(r));
  // Strings that need escapes, numbers of every size, nesting, and doubles that stay
  // doubles when they have no fraction.
  std::mt19937_64 rng{5};
  const std::vector<std::string> texts{"plain", "quote \" and \\ back", "tab\tnl\n\x01\x1f",
                                       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", ""};
  for (int i = 0; i < 200; ++i) {
    twin_record rec;
    rec.id = id("j:t" + std::to_string(i));
    rec.type = "t";
    rec.version = rng();
    for (int k = 0; k < 6; ++k) {
      auto name = "p" + std::to_string(k);
      double d = std::ldexp(static_cast<double>(rng() % 2000000) - 1e6,
                            static_cast<int>(rng() % 120) - 60);
      switch (rng() % 6) {
        case 0: rec.reported[name] = value{d}; break;
        case 1: rec.reported[name] = value{static_cast<int64_t>(rng())}; break;
        case 2: rec.reported[name] = value{std::floor(d)}; break;
        case 3: rec.reported[name] = value{texts[rng() % texts.size()]}; break;
        case 4: rec.reported[name] = value{value_map{{"in", value{value_list{value{d}, value{}}}}}}; break;
        default: rec.desired[name] = value{rng() % 2 == 0};
      }
      rec.metadata[name] = property_meta{static_cast<int64_t>(rng() >> 20), texts[k % 3]};
    }
    auto text = to_json_text(rec);
    auto parsed = nlohmann::json::parse(text);
    ASSERT_EQ(parsed, to_json(rec)) << text;
    EXPECT_TRUE(parsed["version"].is_number_unsigned()) << text;  // all 64 bits, no sign
    for (const auto& [k, v] : rec.reported) {
      if (v.is_double()) {
        EXPECT_TRUE(parsed["properties"][k].is_number_float()) << text;
      }
    }
  }
  // Bytes that are not UTF-8 become U+FFFD, as the server's other answers have them.
  twin_record bad;
  bad.id = id("j:bad");
  bad.reported["s"] = value{std::string{"a\xff\xc3(b\xed\xa0\x80"}};
  auto parsed = nlohmann::json::parse(to_json_text(bad));
  EXPECT_EQ(parsed["properties"]["s"], "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(parsed["parent"], nullptr);
}

TEST(delta, holds_desired_keys_that_reported_does_not_match) {
  twin_record r;
  r.desired = {{"rpm", value{1200}}, {"mode", value{"auto"}}};
  r.reported = {{"rpm", value{1000.0}}, {"mode", value{"auto"}}};
  auto d = delta(r);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d.at("rpm"), value{1200});
  r.reported["rpm"] = value{1200.0};
  EXPECT_TRUE(delta(r).empty());
}

bool eval(const std::string& text, const value_map& props) {
  auto e = expression::parse(text);
  if (!e)
    throw std::runtime_error(error_message(e.error()));
  return e->eval([&](std::string_view n) -> const value* {
    auto i = props.find(n);
    return i == props.end() ? nullptr : &i->second;
  });
}

TEST(expression, evaluates_comparisons_and_logic) {
  value_map p{{"temperature", value{95.5}}, {"status", value{"on"}}, {"ok", value{true}},
              {"count", value{3}}};
  EXPECT_TRUE(eval("temperature > 90", p));
  EXPECT_FALSE(eval("temperature <= 90", p));
  EXPECT_TRUE(eval("temperature > 80 and status = \"on\"", p));
  EXPECT_TRUE(eval("temperature > 100 or status == 'on'", p));
  EXPECT_FALSE(eval("not (temperature > 90)", p));
  EXPECT_TRUE(eval("(count >= 3 and ok = true) or missing > 1", p));
  EXPECT_TRUE(eval("90 < temperature", p));
  EXPECT_TRUE(eval("count != 2", p));
  EXPECT_TRUE(eval("count = 3.0", p));
  EXPECT_FALSE(eval("missing > 1", p));
  EXPECT_FALSE(eval("status > 3", p));  // different kinds compare false
  EXPECT_TRUE(eval("temperature > 9.0e1", p));
}

TEST(expression, takes_in_exists_and_not) {
  value_map p{{"status", value{"warning"}}, {"count", value{3}}, {"exists", value{1}}};
  EXPECT_TRUE(eval("status in ('ok', 'warning')", p));
  EXPECT_FALSE(eval("status in (\"ok\", \"critical\")", p));
  EXPECT_TRUE(eval("count in (1, 3.0)", p));
  EXPECT_FALSE(eval("count in ('3')", p)) << "a string is not a number";
  EXPECT_FALSE(eval("missing in (1, 2)", p));
  EXPECT_TRUE(eval("not (missing in (1, 2))", p));
  EXPECT_TRUE(eval("exists(status) and not exists(missing)", p));
  EXPECT_TRUE(eval("EXISTS (count) AND count IN (3)", p));
  EXPECT_TRUE(eval("exists = 1", p)) << "a property named exists";
  // A missing property: every comparison is false, != too; not, exists say otherwise.
  EXPECT_FALSE(eval("missing != 'ok'", p));
  EXPECT_TRUE(eval("not (missing = 'ok')", p));
  auto e = expression::parse("a in (1) and exists(b)");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->properties(), (std::vector<std::string>{"a", "b"}));
  for (auto bad : {"status in ()", "status in ('a',)", "status in 'a'", "3 in (3)",
                   "status in (a)", "exists(3)", "exists(a", "in = 3"}) {
    auto x = expression::parse(bad);
    ASSERT_FALSE(x) << bad;
    EXPECT_NE(error_message(x.error()).find("position"), std::string::npos) << bad;
  }
  std::string many = "a in (";
  for (int i = 0; i < 300; ++i)
    many += (i > 0 ? "," : "") + std::to_string(i);
  EXPECT_FALSE(expression::parse(many + ")"));
}

TEST(expression, reports_errors_with_a_position) {
  for (auto bad : {"", "temperature >", "> 3", "a > 3 and", "(a > 3", "a > 3)", "a ~ 3",
                   "a > 'open", "3 > 4", "a > 3 or or b < 2"}) {
    auto e = expression::parse(bad);
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(error_code(e.error()), runtime_errc::invalid_argument);
    EXPECT_NE(error_message(e.error()).find("position"), std::string::npos) << bad;
  }
  std::string deep(100, '(');
  EXPECT_FALSE(expression::parse(deep + "a > 1" + std::string(100, ')')));
  EXPECT_FALSE(expression::parse(std::string(5000, 'a') + " > 1"));
}

TEST(expression, lists_the_properties_it_reads) {
  auto e = expression::parse("a > 1 and (b = 'x' or a < 0)");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->properties(), (std::vector<std::string>{"a", "b"}));
}

} // namespace
} // namespace twin::test
