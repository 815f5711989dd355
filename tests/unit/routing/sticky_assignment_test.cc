#include "routing/sticky_assignment.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace cutover::routing {
namespace {

std::vector<std::string> keys(int count) {
  std::vector<std::string> out;
  for (int i = 0; i < count; ++i) out.push_back("user-" + std::to_string(i));
  return out;
}

TEST(StickyAssignmentTest, SameKeySamePositionEveryTime) {
  EXPECT_EQ(sticky_position("migration-a", "user-42"), sticky_position("migration-a", "user-42"));
  // Pinned value: a change of hash would reshuffle every user of every running migration, and
  // replicas of different versions would disagree.
  EXPECT_DOUBLE_EQ(sticky_position("migration-a", "user-42"), 0.072508852390525624);
}

TEST(StickyAssignmentTest, PositionsAreInTheUnitInterval) {
  for (const auto& key : keys(10000)) {
    const double position = sticky_position("salt", key);
    ASSERT_GE(position, 0.0);
    ASSERT_LT(position, 1.0);
  }
}

TEST(StickyAssignmentTest, RaisingTheWeightNeverMovesAUserBack) {
  const auto all = keys(20000);
  const double weights[] = {0.0, 0.05, 0.25, 0.5, 0.75, 1.0};
  for (const auto& key : all) {
    const double position = sticky_position("m1", key);
    bool was_candidate = false;
    for (double weight : weights) {
      const bool candidate = goes_to_candidate(position, weight);
      ASSERT_TRUE(candidate || !was_candidate) << key << " moved back at weight " << weight;
      was_candidate = candidate;
    }
  }
}

TEST(StickyAssignmentTest, LoweringTheWeightMovesOnlyTheTopSlice) {
  int moved = 0, moved_wrongly = 0;
  for (const auto& key : keys(20000)) {
    const double position = sticky_position("m1", key);
    const bool before = goes_to_candidate(position, 0.5);
    const bool after = goes_to_candidate(position, 0.25);
    if (before != after) {
      ++moved;
      if (!(position >= 0.25 && position < 0.5)) ++moved_wrongly;
    }
    EXPECT_FALSE(!before && after) << "lowering the weight sent " << key << " to the candidate";
  }
  EXPECT_GT(moved, 0);
  EXPECT_EQ(moved_wrongly, 0);
}

TEST(StickyAssignmentTest, ShareFollowsTheWeight) {
  const auto all = keys(100000);
  for (double weight : {0.05, 0.25, 0.5, 0.75}) {
    int candidate = 0;
    for (const auto& key : all) candidate += goes_to_candidate(sticky_position("m2", key), weight);
    const double share = static_cast<double>(candidate) / all.size();
    // Four standard deviations of a binomial share at n = 100000.
    const double tolerance = 4 * std::sqrt(weight * (1 - weight) / all.size());
    EXPECT_NEAR(share, weight, tolerance) << "weight " << weight;
  }
}

TEST(StickyAssignmentTest, DifferentSaltsAssignIndependently) {
  int both = 0;
  const auto all = keys(100000);
  for (const auto& key : all) {
    both += goes_to_candidate(sticky_position("migration-a", key), 0.5) &&
            goes_to_candidate(sticky_position("migration-b", key), 0.5);
  }
  // Independent halves overlap on a quarter of the users, not on all of them.
  EXPECT_NEAR(static_cast<double>(both) / all.size(), 0.25, 0.01);
}

TEST(StickyAssignmentTest, SaltAndKeyBoundaryMatters) {
  EXPECT_NE(sticky_position("ab", "c"), sticky_position("a", "bc"));
}

}  // namespace
}  // namespace cutover::routing
