#include "core/clock.hpp"

#include <gtest/gtest.h>

#include "core/duration.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

TEST(SystemClock, SurelyBeforeIsNeverTrueForAPassedDeadline) {
    SystemClock clock;
    for (int i = 0; i < 10'000; ++i) {
        const TimePoint now = clock.now();
        EXPECT_FALSE(clock.surely_before(now - 1us));
        EXPECT_FALSE(clock.surely_before(now));
    }
}

TEST(SystemClock, SurelyBeforeAnswersForDeadlinesNearAndFar) {
    SystemClock clock;
    EXPECT_TRUE(clock.surely_before(clock.now() + 1h));
    // Inside the coarse clock's margin the precise clock decides.
    EXPECT_TRUE(clock.surely_before(clock.now() + 500ms));
    EXPECT_TRUE(clock.surely_before(clock.now() + 2s));
}

TEST(ManualClock, MovesOnlyWhenTold) {
    ManualClock clock;
    const TimePoint start = clock.now();
    EXPECT_EQ(clock.now(), start);
    clock.advance(1500ms);
    EXPECT_EQ(clock.now(), start + 1500ms);
    EXPECT_TRUE(clock.surely_before(start + 1501ms));
    EXPECT_FALSE(clock.surely_before(start + 1500ms));
}

TEST(Duration, ParsesNumbersAndUnits) {
    EXPECT_EQ(parse_duration("1.5"), 1500ms);
    EXPECT_EQ(parse_duration("250ms"), 250ms);
    EXPECT_EQ(parse_duration("30s"), 30s);
    EXPECT_EQ(parse_duration("5m"), 5min);
    EXPECT_EQ(parse_duration("2h"), 2h);
    EXPECT_EQ(parse_duration("1d"), 24h);
    EXPECT_FALSE(parse_duration("-1s"));
    EXPECT_FALSE(parse_duration("soon"));
    EXPECT_FALSE(parse_duration("5 m"));
    EXPECT_FALSE(parse_duration(""));
    EXPECT_FALSE(parse_duration("1e300"));
}

}  // namespace
}  // namespace keyturn
