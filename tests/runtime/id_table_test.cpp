#include "id_table.hpp"

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

namespace twin::test {
namespace {

using runtime::id_table;
using runtime::twin_id;

twin_id id_of(int i) {
  return twin_id::trusted("t:n" + std::to_string(i));
}

TEST(id_table, agrees_with_a_map_under_random_inserts_and_erases) {
  // Hashes from a small range collide often: long probe runs, and erases that must shift
  // entries of other home slots back across the run.
  for (uint64_t hash_range : {uint64_t{7}, uint64_t{1} << 63}) {
    id_table<int> table;
    std::unordered_map<std::string, int> model;
    std::mt19937_64 rng{hash_range};
    auto hash_of = [&](const twin_id& id) { return id_table<int>::hash(id) % hash_range; };
    for (int step = 0; step < 20000; ++step) {
      auto id = id_of(static_cast<int>(rng() % 500));
      if (rng() % 3 == 0) {
        table.erase(id, hash_of(id));
        model.erase(id.str());
      } else {
        auto [v, inserted] = table.try_emplace(id, hash_of(id));
        ASSERT_EQ(inserted, model.count(id.str()) == 0) << id.str();
        *v = step;
        model[id.str()] = step;
      }
      ASSERT_EQ(table.size(), model.size());
    }
    for (int i = 0; i < 500; ++i) {
      auto id = id_of(i);
      auto* v = table.find(id, hash_of(id));
      auto m = model.find(id.str());
      ASSERT_EQ(v != nullptr, m != model.end()) << id.str();
      if (v != nullptr) {
        EXPECT_EQ(*v, m->second) << id.str();
      }
    }
    size_t seen = 0;
    table.for_each([&](const twin_id& id, int v) {
      ++seen;
      EXPECT_EQ(model.at(id.str()), v);
    });
    EXPECT_EQ(seen, model.size());
  }
}

TEST(id_table, erases_from_runs_that_wrap_around_the_end) {
  // Twelve entries keep the table at its first 16 slots. The hashes are chosen so that
  // every entry's home slot is one of the last two: the run of entries wraps around the
  // end of the slots, and each erase must shift entries back across it.
  id_table<int> table;
  std::vector<uint64_t> hashes;
  for (uint64_t h = 0; hashes.size() < 12; ++h)
    if ((h * 0x9e3779b97f4a7c15ull) >> 60 >= 14)  // the table's home slot of h
      hashes.push_back(h);
  for (int i = 0; i < 12; ++i)
    *table.try_emplace(id_of(i), hashes[static_cast<size_t>(i)]).first = i;
  ASSERT_EQ(table.slot_count(), 16u);
  ASSERT_NE(table.slot_at(0), nullptr);  // the run wraps around the end
  std::vector<bool> erased(12, false);
  for (int gone : {0, 5, 11, 1, 7, 3}) {
    table.erase(id_of(gone), hashes[static_cast<size_t>(gone)]);
    erased[static_cast<size_t>(gone)] = true;
    for (int i = 0; i < 12; ++i) {
      auto* v = table.find(id_of(i), hashes[static_cast<size_t>(i)]);
      if (erased[static_cast<size_t>(i)]) {
        EXPECT_EQ(v, nullptr) << "after erasing " << gone << ": " << i;
      } else {
        ASSERT_NE(v, nullptr) << "after erasing " << gone << ": " << i;
        EXPECT_EQ(*v, i);
      }
    }
  }
  EXPECT_EQ(table.size(), 6u);
}

TEST(id_table, keeps_values_in_place_while_it_grows) {
  id_table<int> table;
  std::vector<int*> where;
  for (int i = 0; i < 1000; ++i) {
    auto id = id_of(i);
    where.push_back(table.try_emplace(id, id_table<int>::hash(id)).first);
    *where.back() = i;
  }
  EXPECT_GE(table.slot_count(), 1024u);
  for (int i = 0; i < 1000; ++i) {
    auto id = id_of(i);
    EXPECT_EQ(table.find(id, id_table<int>::hash(id)), where[static_cast<size_t>(i)]);
  }
}

} // namespace
} // namespace twin::test
