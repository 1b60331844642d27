// Twin types added and upgraded while the node runs: stored, installed, taken by active
// twins, installed again at the next start; and twins whose type no model defines.

#include <algorithm>

#include <gtest/gtest.h>

#include "host_fixture.hpp"
#include "twin/runtime/kv_store.hpp"
#include "twin/runtime/model_catalog.hpp"

namespace twin::test {
namespace {

using namespace runtime;

/// A space, and a room that extends it, in version `v` of the room: version 1 has the
/// dateTime `cleaned`, later ones the number `area` instead.
std::string rooms(int v, int space_version = 1, const std::string& kind = "asset") {
  std::string room_contents =
    v == 1 ? R"({"@type": "Property", "name": "cleaned", "schema": "dateTime"})"
           : R"({"@type": "Property", "name": "area", "schema": "double"})";
  return R"([{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:b:Space;)"
         + std::to_string(space_version) + R"(", "@type": "Interface",
    "contents": [{"@type": "Property", "name": "label", "schema": "string"}]},
   {"@context": "dtmi:dtdl:context;3", "@id": "dtmi:b:Room;)" + std::to_string(v)
         + R"(", "@type": "Interface", "extends": "dtmi:b:Space;)" + std::to_string(space_version)
         + R"(", "contents": [)" + room_contents + R"(,
      {"@type": "Property", "name": "use", "schema": {"@type": "Enum", "valueSchema": "string",
       "enumValues": [{"name": "office", "enumValue": "office"}, {"name": "lab", "enumValue": "lab"}]}}],
    "twin": {"kind": ")" + kind + R"("}}])";
}

class model_catalog_test : public host_test {
protected:
  std::unique_ptr<model_catalog> catalog(type_registry& types) {
    auto c = std::make_unique<model_catalog>(
      make_local_kv_store(*store_, h().local_commit(), "models/"), types, *store_,
      [this](const std::string& why) { warnings.push_back(why); });
    auto skipped = c->load();
    EXPECT_TRUE(skipped && skipped->empty());
    return c;
  }

  std::vector<std::string> warnings;
};

std::string message(const caf::error& err) {
  return err ? error_message(err) : "";
}

TEST_F(model_catalog_test, an_uploaded_type_is_installed_upgraded_under_active_twins_and_kept) {
  start();
  auto models = catalog(types_);
  auto first = models->put("Room", rooms(1));
  ASSERT_TRUE(first) << message(first.error());
  EXPECT_EQ(first->added, (std::vector<std::string>{"Space", "Room"}));
  ASSERT_TRUE(put(h(), "b:r1", "Room", {},
                  {{"cleaned", value{"2026-12-01T10:00:00Z"}}, {"use", value{"lab"}}}));
  auto no_area = patch(h(), "b:r1", {{"area", value{20.0}}});
  ASSERT_FALSE(no_area);
  EXPECT_EQ(error_code(no_area.error()), runtime_errc::unknown_property);

  // Version 2 of both: the active twin takes it at its next message.
  auto second = models->put("Room", rooms(2, 2));
  ASSERT_TRUE(second) << message(second.error());
  EXPECT_EQ(second->upgraded, (std::vector<std::string>{"Space", "Room"}));
  EXPECT_EQ(types_.find("Room")->dtmi(), "dtmi:b:Room;2");
  ASSERT_TRUE(patch(h(), "b:r1", {{"area", value{20.0}}}));
  auto rec = get(h(), "b:r1");
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->reported.at("area"), value{20.0});
  EXPECT_EQ(rec->reported.at("cleaned"), value{"2026-12-01T10:00:00Z"}) << "kept, undeclared";
  auto banana = patch(h(), "b:r1", {{"use", value{"banana"}}});
  ASSERT_FALSE(banana);
  EXPECT_EQ(error_code(banana.error()), runtime_errc::out_of_range);

  // What an upgrade may not do.
  EXPECT_EQ(message(models->put("Room", rooms(2, 2)).error()), "");  // the same: unchanged
  EXPECT_EQ(models->put("Room", rooms(2, 2))->unchanged,
            (std::vector<std::string>{"Space", "Room"}));
  auto other = models->put("Room", rooms(2, 2, "system"));
  ASSERT_FALSE(other);
  EXPECT_EQ(message(other.error()),
            "dtmi:b:Room;2 is loaded with other contents: a change takes a higher version");
  auto older = models->put("Room", rooms(1, 2));
  ASSERT_FALSE(older);
  EXPECT_EQ(message(older.error()),
            "type 'Room': dtmi:b:Room;2 is loaded: an upgrade takes a higher version than 2");
  auto kind = models->put("Room", rooms(3, 2, "system"));
  ASSERT_FALSE(kind);
  EXPECT_EQ(message(kind.error()), "type 'Room': an upgrade keeps the kind (asset)");
  auto alone = models->put("Space", R"({"@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:b:Space;3", "@type": "Interface"})");
  ASSERT_FALSE(alone);
  EXPECT_EQ(message(alone.error()), "type 'Room' extends dtmi:b:Space: upgrade them together "
                                    "(one upload with both interfaces)");
  auto named = models->put("Hall", rooms(3, 2));
  ASSERT_FALSE(named);
  EXPECT_EQ(message(named.error()),
            "the model of 'Hall' defines no type 'Hall' (it defines 'Room', 'Space')");
  auto clash = models->put("motor", R"({"@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:x:motor;1", "@type": "Interface", "twin": {"name": "motor"}})");
  ASSERT_FALSE(clash);
  EXPECT_EQ(message(clash.error()),
            "type 'motor' exists as a model of C++ code, not of dtmi:x:motor");
  auto renamed = models->put("Chamber", R"({"@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:b:Room;9", "@type": "Interface", "twin": {"name": "Chamber"}})");
  ASSERT_FALSE(renamed);
  EXPECT_EQ(message(renamed.error()), "type 'Chamber' is a model of dtmi:b:Room, which type "
                                      "'Room' is: an upgrade keeps its name");
  // A later upload extends what the node has.
  auto lab = models->put("Lab", R"({"@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:b:Lab;1", "@type": "Interface", "extends": "dtmi:b:Room;2"})");
  ASSERT_TRUE(lab) << message(lab.error());
  EXPECT_EQ(types_.find("Lab")->property("area")->name, "area");
  EXPECT_EQ(types_.find("dtmi:b:Room;2")->name(), "Room");

  auto door = [](const std::string& version) {
    return R"({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:b:Door;)" + version
           + R"(", "@type": "Interface"})";
  };
  ASSERT_TRUE(models->put("Door", door("1.1")));
  auto minor = models->put("Door", door("1.2"));
  ASSERT_TRUE(minor) << message(minor.error());
  EXPECT_EQ(minor->upgraded, std::vector<std::string>{"Door"});

  // The next start installs every stored interface, at its latest version; one that a
  // model file of the node has at a higher version now is skipped, and the others install.
  restart();
  type_registry fresh;
  add_test_types(fresh);
  auto file = parse_models({{"door.json", door("2")}}, fresh);
  ASSERT_TRUE(file);
  ASSERT_FALSE(fresh.add(file->front()));
  model_catalog again{make_local_kv_store(*store_, h().local_commit(), "models/"), fresh, *store_};
  auto skipped = again.load();
  ASSERT_TRUE(skipped);
  ASSERT_EQ(skipped->size(), 1u);
  EXPECT_EQ(skipped->front(), "the stored model of dtmi:b:Door: type 'Door': dtmi:b:Door;2 is "
                              "loaded: an upgrade takes a higher version than 2");
  ASSERT_TRUE(fresh.find("Lab") && fresh.find("Room"));
  EXPECT_EQ(fresh.find("Room")->dtmi(), "dtmi:b:Room;2");
  EXPECT_EQ(fresh.find("Space")->dtmi(), "dtmi:b:Space;2");
  EXPECT_EQ(fresh.find("Door")->dtmi(), "dtmi:b:Door;2");
  EXPECT_TRUE(warnings.empty()) << warnings.front();
}

TEST_F(model_catalog_test, twins_whose_type_no_model_defines_are_read_and_deleted_only) {
  start();
  auto models = catalog(types_);
  ASSERT_TRUE(models->put("Room", rooms(1)));
  ASSERT_TRUE(put(h(), "b:r1", "Room", {}, {{"use", value{"office"}}}));
  ASSERT_TRUE(put(h(), "b:r2", "Room"));
  stop();
  // A node without the model: no stored models either (another prefix).
  type_registry without;
  add_test_types(without);
  host other{*sys_, *store_, without, {}};
  ASSERT_FALSE(other.start());
  model_catalog none{make_local_kv_store(*store_, other.local_commit(), "elsewhere/"), without,
                     *store_};
  ASSERT_TRUE(none.load());
  EXPECT_EQ(none.missing(), std::vector<std::string>{"Room"});
  std::vector<metrics::family> figures;
  none.collect(figures);
  auto missing = std::find_if(figures.begin(), figures.end(), [](const metrics::family& f) {
    return f.name == "twin_types_missing";
  });
  ASSERT_NE(missing, figures.end());
  EXPECT_EQ(missing->samples.at(0).value, 1.0);
  auto rec = get(other, "b:r1");
  ASSERT_TRUE(rec) << message(rec.error());
  EXPECT_EQ(rec->type, "Room");
  EXPECT_EQ(rec->reported.at("use"), value{"office"});
  auto refused = ingest(other, "b:r1", {{"use", value{"lab"}}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(message(refused.error()),
            "twin b:r1 has type 'Room', which no model of this node defines: load its model "
            "(PUT /v1/types/Room) or delete the twin");
  EXPECT_FALSE(patch(other, "b:r1", {{"use", value{"lab"}}}));
  EXPECT_EQ(get(other, "b:r1")->version, rec->version);
  ASSERT_TRUE(remove(other, "b:r1"));
  EXPECT_FALSE(get(other, "b:r1"));
  // Its model comes back: the twin left is a Room again, without a restart.
  ASSERT_TRUE(none.put("Room", rooms(1)));
  EXPECT_TRUE(none.missing().empty());
  EXPECT_TRUE(patch(other, "b:r2", {{"use", value{"lab"}}}));
  ASSERT_TRUE(remove(other, "b:r2"));
  EXPECT_FALSE(other.stop());
}

} // namespace
} // namespace twin::test
