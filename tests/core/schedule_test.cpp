#include "core/schedule.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <ctime>

#include "core/json_support.hpp"

namespace keyturn {
namespace {

using namespace std::chrono_literals;

// A UTC time written "YYYY-MM-DD HH:MM" or "YYYY-MM-DD HH:MM:SS".
TimePoint utc(const char *text) {
    std::tm tm{};
    int seconds = 0;
    int n = std::sscanf(text, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &seconds);
    EXPECT_GE(n, 5) << text;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = seconds;
    return TimePoint(std::chrono::seconds(timegm(&tm)));
}

// The same format back, seconds shown only when there are some; "never" for nothing.
std::string show(std::optional<TimePoint> t) {
    if (!t) return "never";
    if (*t == kNever) return "kNever";
    const auto whole = std::chrono::floor<std::chrono::seconds>(*t);
    std::time_t s = whole.time_since_epoch().count();
    std::tm tm{};
    gmtime_r(&s, &tm);
    char text[40];
    std::snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min);
    std::string out = text;
    if (tm.tm_sec != 0) out += ":" + std::to_string(100 + tm.tm_sec).substr(1);
    if (*t != whole) out += " and a fraction";
    return out;
}

CronExpr cron(const char *text) {
    std::string error;
    std::optional<CronExpr> c = parse_cron(text, &error);
    EXPECT_TRUE(c) << text << ": " << error;
    return c.value_or(CronExpr{});
}

std::string cron_error(const char *text) {
    std::string error;
    EXPECT_FALSE(parse_cron(text, &error)) << text;
    return error;
}

// The next fire time of `expression` after `after`, shown as text.
std::string next_fire(const char *expression, const char *after) {
    return show(next_cron_fire(cron(expression), utc(after)));
}

// The fire times one after the other, starting after `after`.
std::vector<std::string> fires(const char *expression, const char *after, int count) {
    std::vector<std::string> out;
    const CronExpr c = cron(expression);
    std::optional<TimePoint> t = utc(after);
    for (int i = 0; i < count && t; ++i) {
        t = next_cron_fire(c, *t);
        out.push_back(show(t));
    }
    return out;
}

RotationSchedule every(Duration period, Duration jitter = Duration::zero()) {
    RotationSchedule s;
    s.kind = RotationSchedule::Kind::every;
    s.period = period;
    s.jitter = jitter;
    return s;
}

RotationSchedule cron_schedule(const char *expression, Duration window = kDefaultCronWindow,
                               Duration jitter = Duration::zero()) {
    RotationSchedule s;
    s.kind = RotationSchedule::Kind::cron;
    s.cron = cron(expression);
    s.window = window;
    s.jitter = jitter;
    return s;
}

// The largest draw below 1.
const double kAlmostOne = std::nextafter(1.0, 0.0);

// ---- Parsing -------------------------------------------------------------------------------

TEST(CronParse, ReadsNumbersRangesListsAndSteps) {
    CronExpr c = cron("5,10-12,*/20 9-17/4 1 * *");
    std::bitset<60> minutes;
    for (int m : {0, 5, 10, 11, 12, 20, 40})
        minutes.set(m);
    EXPECT_EQ(c.minutes, minutes);
    std::bitset<24> hours;
    for (int h : {9, 13, 17})
        hours.set(h);
    EXPECT_EQ(c.hours, hours);
    EXPECT_EQ(c.days_of_month, std::bitset<32>().set(1));
    EXPECT_EQ(c.months, std::bitset<13>(0x1ffe));  // 1-12
    EXPECT_EQ(c.days_of_week, std::bitset<7>(0x7f));
    EXPECT_TRUE(c.day_of_month_restricted);
    EXPECT_FALSE(c.day_of_week_restricted);
}

TEST(CronParse, ReadsMonthAndDayNamesInAnyCase) {
    EXPECT_EQ(cron("0 0 * jan-Mar,DEC mon-FRI"), cron("0 0 * 1-3,12 1-5"));
    EXPECT_EQ(cron("0 0 * * sun"), cron("0 0 * * 0"));
}

TEST(CronParse, TakesSundayAsBothZeroAndSeven) {
    EXPECT_EQ(cron("0 0 * * 7"), cron("0 0 * * 0"));
    EXPECT_EQ(cron("0 0 * * 5-7").days_of_week, cron("0 0 * * 0,5,6").days_of_week);
    EXPECT_EQ(cron("0 0 * * 0-7").days_of_week, std::bitset<7>(0x7f));
}

TEST(CronParse, AcceptsBlanksAndTabsBetweenFields) {
    EXPECT_EQ(cron("  0\t3  * *   SUN "), cron("0 3 * * 0"));
}

TEST(CronParse, OnlyABareStarLeavesADayFieldUnrestricted) {
    EXPECT_FALSE(cron("0 0 * * *").day_of_month_restricted);
    EXPECT_TRUE(cron("0 0 */1 * *").day_of_month_restricted);
    EXPECT_TRUE(cron("0 0 1-31 * 0-7").day_of_week_restricted);
}

TEST(CronParse, AcceptsTheUsualShorthands) {
    EXPECT_EQ(cron("@yearly"), cron("0 0 1 1 *"));
    EXPECT_EQ(cron("@annually"), cron("0 0 1 1 *"));
    EXPECT_EQ(cron("@monthly"), cron("0 0 1 * *"));
    EXPECT_EQ(cron("@weekly"), cron("0 0 * * 0"));
    EXPECT_EQ(cron("@Daily"), cron("0 0 * * *"));
    EXPECT_EQ(cron("@midnight"), cron("0 0 * * *"));
    EXPECT_EQ(cron("@hourly"), cron("0 * * * *"));
}

TEST(CronParse, RejectsMistakesNamingTheFieldAndTheProblem) {
    const std::pair<const char *, const char *> cases[] = {
        {"0 24 * * *", "field 2 (hour): 24 is out of range 0-23"},
        {"60 0 * * *", "field 1 (minute): 60 is out of range 0-59"},
        {"0 0 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"},
        {"0 0 32 * *", "field 3 (day-of-month): 32 is out of range 1-31"},
        {"0 0 * 13 *", "field 4 (month): 13 is out of range 1-12"},
        {"0 0 * * 8", "field 5 (day-of-week): 8 is out of range 0-7"},
        {"0 99999999999 * * *", "field 2 (hour): 99999999999 is out of range 0-23"},
        {"5-2 0 * * *", "field 1 (minute): range 5-2 runs backwards"},
        {"0 0 * * SAT-SUN", "field 5 (day-of-week): range SAT-SUN runs backwards"},
        {"*/0 0 * * *", "field 1 (minute): step 0 is out of range 1-59"},
        {"0 */24 * * *", "field 2 (hour): step 24 is out of range 1-23"},
        {"0 0 * * MON/2",
         "field 5 (day-of-week): a step needs a range: write \"MON-7/2\" or "
         "\"*/2\""},
        {"0 0 1-10/x * *", "field 3 (day-of-month): step \"x\" is not a number"},
        {"0 0 * FOO *", "field 4 (month): \"FOO\" is not a month number or name (JAN-DEC)"},
        {"0 0 * * FRIDAY",
         "field 5 (day-of-week): \"FRIDAY\" is not a day number or name (SUN-SAT)"},
        {"MON 0 * * *", "field 1 (minute): \"MON\" is not a number"},
        {"0 0 JAN * *", "field 3 (day-of-month): \"JAN\" is not a number"},
        {"-1 0 * * *", "field 1 (minute): a value is missing in \"-1\""},
        {"+1 0 * * *", "field 1 (minute): \"+1\" is not a number"},
        {"1,,2 0 * * *", "field 1 (minute): an empty item in the list \"1,,2\""},
        {"0 0 * * 1,", "field 5 (day-of-week): an empty item in the list \"1,\""},
        {"0 ? * * *", "field 2 (hour): \"?\" is not a number"},
        {"0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 6"},
        {"0 0 * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 4"},
        {"", "expected 5 fields (minute hour day-of-month month day-of-week), found 0"},
        {"@reboot",
         "unknown shorthand \"@reboot\"; expected @yearly, @annually, @monthly, "
         "@weekly, @daily, @midnight or @hourly"},
        {"@daily 0", "the shorthand \"@daily\" stands alone"},
    };
    for (const auto &[text, message] : cases)
        EXPECT_EQ(cron_error(text), message) << text;
}

TEST(CronParse, NeedsNoPlaceForTheMessage) {
    EXPECT_FALSE(parse_cron("0 24 * * *"));
    EXPECT_TRUE(parse_cron("0 23 * * *"));
}

// ---- Fire times ----------------------------------------------------------------------------

TEST(CronFire, FiresStrictlyAfterTheGivenTime) {
    EXPECT_EQ(next_fire("0 3 * * *", "2024-05-01 02:59:59"), "2024-05-01 03:00");
    EXPECT_EQ(next_fire("0 3 * * *", "2024-05-01 03:00"), "2024-05-02 03:00");
    EXPECT_EQ(next_fire("* * * * *", "2024-05-01 03:00"), "2024-05-01 03:01");
    EXPECT_EQ(show(next_cron_fire(cron("* * * * *"), utc("2024-05-01 03:00") + 1ns)),
              "2024-05-01 03:01");
}

TEST(CronFire, CrossesMonthEnds) {
    EXPECT_EQ(next_fire("0 0 31 * *", "2024-04-01 00:00"), "2024-05-31 00:00");
    EXPECT_EQ(next_fire("30 23 * * *", "2024-04-30 23:30"), "2024-05-01 23:30");
    EXPECT_EQ(
        fires("0 12 30 * *", "2023-01-31 00:00", 3),
        (std::vector<std::string>{"2023-03-30 12:00", "2023-04-30 12:00", "2023-05-30 12:00"}));
}

TEST(CronFire, FindsTheTwentyNinthOfFebruaryOnlyInLeapYears) {
    EXPECT_EQ(next_fire("0 0 29 2 *", "2023-03-01 00:00"), "2024-02-29 00:00");
    EXPECT_EQ(next_fire("0 0 29 2 *", "2024-02-29 00:00"), "2028-02-29 00:00");
    // 2100 is not a leap year: eight years pass between two 29ths of February.
    EXPECT_EQ(next_fire("0 0 29 2 *", "2096-03-01 00:00"), "2104-02-29 00:00");
    EXPECT_EQ(next_fire("0 0 * 2 *", "2024-02-28 12:00"), "2024-02-29 00:00");
    EXPECT_EQ(next_fire("0 0 * 2 *", "2023-02-28 12:00"), "2024-02-01 00:00");
}

TEST(CronFire, CrossesTheYearEnd) {
    EXPECT_EQ(next_fire("0 0 1 1 *", "2024-12-31 23:59"), "2025-01-01 00:00");
    EXPECT_EQ(next_fire("59 23 31 12 *", "2024-12-31 23:59"), "2025-12-31 23:59");
    EXPECT_EQ(next_fire("*/15 * * * *", "2024-12-31 23:50"), "2025-01-01 00:00");
}

TEST(CronFire, MatchesEitherDayFieldWhenBothAreRestricted) {
    // The 13th of any month, or any Friday. 2024-09-06 and 2024-09-13 are Fridays.
    EXPECT_EQ(fires("0 12 13 * FRI", "2024-09-01 00:00", 4),
              (std::vector<std::string>{"2024-09-06 12:00", "2024-09-13 12:00", "2024-09-20 12:00",
                                        "2024-09-27 12:00"}));
    EXPECT_EQ(fires("0 12 13 * FRI", "2024-10-10 00:00", 2),
              (std::vector<std::string>{"2024-10-11 12:00", "2024-10-13 12:00"}));
    // A stepped field counts as restricted: the 1st, 11th, 21st, 31st, or a Monday.
    EXPECT_EQ(fires("0 0 */10 * MON", "2024-07-01 00:00", 4),
              (std::vector<std::string>{"2024-07-08 00:00", "2024-07-11 00:00", "2024-07-15 00:00",
                                        "2024-07-21 00:00"}));
}

TEST(CronFire, NeedsOnlyTheRestrictedDayFieldWhenTheOtherIsAStar) {
    // 2024-09-02 is the first Monday of September.
    EXPECT_EQ(next_fire("0 0 * * MON", "2024-09-01 00:00"), "2024-09-02 00:00");
    EXPECT_EQ(next_fire("0 0 13 * *", "2024-09-01 00:00"), "2024-09-13 00:00");
}

TEST(CronFire, FollowsStepsAndRanges) {
    EXPECT_EQ(fires("*/20 9-17/4 * * *", "2024-03-01 12:00", 5),
              (std::vector<std::string>{"2024-03-01 13:00", "2024-03-01 13:20", "2024-03-01 13:40",
                                        "2024-03-01 17:00", "2024-03-01 17:20"}));
    EXPECT_EQ(next_fire("*/20 9-17/4 * * *", "2024-03-01 17:40"), "2024-03-02 09:00");
    EXPECT_EQ(next_fire("0 0 1 JAN-DEC/3 *", "2024-02-01 00:00"), "2024-04-01 00:00");
}

TEST(CronFire, TakesSundayAsZeroOrSeven) {
    // 2024-06-02 is a Sunday.
    EXPECT_EQ(next_fire("0 3 * * 0", "2024-05-30 00:00"), "2024-06-02 03:00");
    EXPECT_EQ(next_fire("0 3 * * 7", "2024-05-30 00:00"), "2024-06-02 03:00");
    EXPECT_EQ(next_fire("0 3 * * SUN", "2024-05-30 00:00"), "2024-06-02 03:00");
    EXPECT_EQ(next_fire("0 3 * * 6-7", "2024-05-30 00:00"), "2024-06-01 03:00");
}

// Each fire time agrees with a plain search that checks every minute, using the C
// library's calendar rather than std::chrono's.
TEST(CronFire, AgreesWithAMinuteByMinuteSearch) {
    auto matches = [](const CronExpr &c, TimePoint t) {
        std::time_t s = std::chrono::floor<std::chrono::seconds>(t).time_since_epoch().count();
        std::tm tm{};
        gmtime_r(&s, &tm);
        const bool dom = c.days_of_month[tm.tm_mday];
        const bool dow = c.days_of_week[tm.tm_wday];
        const bool day =
            c.day_of_month_restricted && c.day_of_week_restricted ? dom || dow : dom && dow;
        return c.minutes[tm.tm_min] && c.hours[tm.tm_hour] && c.months[tm.tm_mon + 1] && day;
    };
    const char *expressions[] = {"*/7 */5 * * *", "0 0 */3 * MON,FRI", "30 12 1,15,31 * *",
                                 "15 2 * * 0",    "0 */6 28-31 * *",   "5 4 * */2 SUN",
                                 "59 23 * * 6-7"};
    for (const char *text : expressions) {
        const CronExpr c = cron(text);
        for (const char *start : {"2023-12-20 00:00", "2024-02-25 13:37"}) {
            TimePoint after = utc(start);
            for (int i = 0; i < 30; ++i) {
                TimePoint expected = std::chrono::floor<std::chrono::minutes>(after) + 1min;
                while (!matches(c, expected))
                    expected += 1min;
                const std::optional<TimePoint> got = next_cron_fire(c, after);
                ASSERT_EQ(show(got), show(expected)) << text << " after " << show(after);
                after = *got;
            }
        }
    }
}

TEST(CronFire, ReturnsNothingForADayThatNeverComes) {
    EXPECT_EQ(next_fire("0 0 30 2 *", "2024-01-01 00:00"), "never");
    EXPECT_EQ(next_fire("0 0 31 4,6,9,11 *", "2024-01-01 00:00"), "never");
    EXPECT_FALSE(cron_can_fire(cron("0 0 30 2 *")));
    EXPECT_FALSE(cron_can_fire(cron("0 0 31 APR *")));
    EXPECT_FALSE(cron_can_fire(CronExpr{}));
    EXPECT_TRUE(cron_can_fire(cron("0 0 29 2 *")));
    // With the day of the week restricted too, either field will do.
    EXPECT_TRUE(cron_can_fire(cron("0 0 30 2 MON")));
    EXPECT_EQ(next_fire("0 0 30 2 MON", "2024-01-01 00:00"), "2024-02-05 00:00");
}

TEST(CronFire, ReturnsNothingNearTheEndOfTime) {
    EXPECT_EQ(show(next_cron_fire(cron("* * * * *"), kNever)), "never");
    EXPECT_EQ(show(next_cron_fire(cron("* * * * *"), TimePoint::min())), "never");
}

// ---- Every ---------------------------------------------------------------------------------

TEST(ScheduleEvery, IsDueNowWhenNeverRotated) {
    const TimePoint now = utc("2024-05-01 10:00");
    EXPECT_EQ(next_rotation(every(24h), std::nullopt, now, 0.5), now);
    EXPECT_TRUE(may_start(every(24h), std::nullopt, now));
}

TEST(ScheduleEvery, IsDueOnePeriodAfterTheLastRotation) {
    const TimePoint last = utc("2024-05-01 10:00");
    EXPECT_EQ(show(next_rotation(every(30 * 24h), last, last + 1h, 0.5)), "2024-05-31 10:00");
    EXPECT_FALSE(may_start(every(30 * 24h), last, utc("2024-05-31 09:59")));
    EXPECT_TRUE(may_start(every(30 * 24h), last, utc("2024-05-31 10:00")));
}

TEST(ScheduleEvery, IsDueNowWhenOverdue) {
    const TimePoint last = utc("2024-05-01 10:00");
    const TimePoint now = utc("2024-06-15 08:00");
    EXPECT_EQ(next_rotation(every(30 * 24h), last, now, 0.5), now);
    EXPECT_TRUE(may_start(every(30 * 24h), last, now));
}

TEST(ScheduleEvery, DelaysByADrawFromTheJitter) {
    const RotationSchedule s = every(24h, 10min);
    const TimePoint last = utc("2024-05-01 10:00");
    EXPECT_EQ(next_rotation(s, last, last, 0.0), last + 24h);
    EXPECT_EQ(next_rotation(s, last, last, 0.5), last + 24h + 5min);
    const TimePoint latest = next_rotation(s, last, last, kAlmostOne);
    EXPECT_LT(latest, last + 24h + 10min);
    EXPECT_GT(latest, last + 24h + 10min - 1ms);

    // Never rotated, or overdue: now plus the offset.
    const TimePoint now = utc("2024-07-01 00:00");
    EXPECT_EQ(next_rotation(s, std::nullopt, now, 0.5), now + 5min);
    EXPECT_EQ(next_rotation(s, last, now, 0.5), now + 5min);
}

TEST(ScheduleEvery, KeepsTheOffsetBelowTheJitterForAnyDraw) {
    const RotationSchedule s = every(24h, 10min);
    EXPECT_EQ(jitter_offset(s, 0.0), Duration::zero());
    EXPECT_EQ(jitter_offset(s, -1.0), Duration::zero());
    EXPECT_EQ(jitter_offset(s, std::nan("")), Duration::zero());
    EXPECT_EQ(jitter_offset(s, 1.0), Duration(10min) - 1ns);
    EXPECT_EQ(jitter_offset(every(24h), kAlmostOne), Duration::zero());
}

// ---- Cron ----------------------------------------------------------------------------------

TEST(ScheduleCron, StartsNowInsideTheWindowOfAFireNotYetServed) {
    const RotationSchedule s = cron_schedule("0 3 * * *");  // window 1 h
    const TimePoint now = utc("2024-05-02 03:20");
    EXPECT_EQ(next_rotation(s, utc("2024-05-01 03:05"), now, 0.0), now);
    EXPECT_EQ(next_rotation(s, std::nullopt, now, 0.0), now);
    EXPECT_TRUE(may_start(s, utc("2024-05-01 03:05"), now));
    EXPECT_TRUE(may_start(s, std::nullopt, now));
}

TEST(ScheduleCron, WaitsForTheNextFireOnceTheWindowHasClosed) {
    const RotationSchedule s = cron_schedule("0 3 * * *");
    const TimePoint last = utc("2024-05-01 03:05");
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 04:10"), 0.0)), "2024-05-03 03:00");
    // The window's end is excluded.
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 04:00"), 0.0)), "2024-05-03 03:00");
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 03:59:59"), 0.0)), "2024-05-02 03:59:59");
    EXPECT_FALSE(may_start(s, last, utc("2024-05-02 04:00")));
    EXPECT_TRUE(may_start(s, last, utc("2024-05-02 03:59:59")));
}

TEST(ScheduleCron, StartsAtTheNextFireBeforeItsWindow) {
    const RotationSchedule s = cron_schedule("0 3 * * *");
    const TimePoint last = utc("2024-05-01 03:05");
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 01:00"), 0.0)), "2024-05-02 03:00");
    EXPECT_FALSE(may_start(s, last, utc("2024-05-02 02:59")));
}

TEST(ScheduleCron, UsesEachWindowOnce) {
    const RotationSchedule s = cron_schedule("0 3 * * *");
    const TimePoint last = utc("2024-05-02 03:05");
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 03:20"), 0.0)), "2024-05-03 03:00");
    EXPECT_FALSE(may_start(s, last, utc("2024-05-02 03:20")));
}

TEST(ScheduleCron, HonoursALongerWindow) {
    const RotationSchedule s = cron_schedule("0 3 * * SUN", 2h);
    // 2024-06-02 is a Sunday.
    const TimePoint now = utc("2024-06-02 04:30");
    EXPECT_EQ(next_rotation(s, utc("2024-05-26 03:00"), now, 0.0), now);
    EXPECT_EQ(show(next_rotation(s, utc("2024-05-26 03:00"), utc("2024-06-02 05:00"), 0.0)),
              "2024-06-09 03:00");
}

TEST(ScheduleCron, TakesTheEarliestUnservedFireWhenWindowsOverlap) {
    // Hourly fires with two-hour windows: at 01:10 the windows of 00:00 and 01:00 are
    // both open; the 00:00 one has not been served, so the rotation starts now.
    const RotationSchedule s = cron_schedule("0 * * * *", 2h, 1h);
    const TimePoint now = utc("2024-05-02 01:10");
    EXPECT_EQ(next_rotation(s, utc("2024-05-01 23:55"), now, 0.5), now);
    // Served at 00:50: the 01:00 fire is next, and its jittered start is 01:30.
    EXPECT_EQ(show(next_rotation(s, utc("2024-05-02 00:50"), now, 0.5)), "2024-05-02 01:30");
}

TEST(ScheduleCron, SpreadsTheStartInsideTheWindow) {
    const RotationSchedule s = cron_schedule("0 3 * * *", 1h, 30min);
    const TimePoint last = utc("2024-05-01 03:05");
    const TimePoint before = utc("2024-05-02 01:00");
    EXPECT_EQ(show(next_rotation(s, last, before, 0.0)), "2024-05-02 03:00");
    EXPECT_EQ(show(next_rotation(s, last, before, 0.5)), "2024-05-02 03:15");
    // Inside the window, the start is the later of now and the jittered start.
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 03:10"), 0.5)), "2024-05-02 03:15");
    EXPECT_EQ(show(next_rotation(s, last, utc("2024-05-02 03:20"), 0.5)), "2024-05-02 03:20");
}

TEST(ScheduleCron, ClampsTheJitterToHalfTheWindow) {
    const RotationSchedule s = cron_schedule("0 3 * * *", 1h, 3h);
    const TimePoint fire = utc("2024-05-02 03:00");
    const TimePoint last = utc("2024-05-01 03:05");
    EXPECT_EQ(jitter_offset(s, 0.5), Duration(15min));
    EXPECT_EQ(next_rotation(s, last, utc("2024-05-02 01:00"), 0.0), fire);
    const TimePoint latest = next_rotation(s, last, utc("2024-05-02 01:00"), kAlmostOne);
    EXPECT_LT(latest, fire + 30min);
    EXPECT_GT(latest, fire + 30min - 1ms);
    // Half the window is left for a start the timer delivers late.
    EXPECT_TRUE(may_start(s, last, latest));
    EXPECT_TRUE(may_start(s, last, latest + 29min));
}

TEST(ScheduleCron, IsNeverDueForAnExpressionThatNeverFires) {
    const RotationSchedule s = cron_schedule("0 0 30 2 *");
    EXPECT_EQ(next_rotation(s, std::nullopt, utc("2024-01-01 00:00"), 0.5), kNever);
    EXPECT_FALSE(may_start(s, std::nullopt, utc("2024-02-29 00:30")));
}

// A start that next_rotation() gives may begin at that very moment, for any schedule,
// last rotation, time of asking and draw.
TEST(Schedule, AllowsEachStartItSchedules) {
    const RotationSchedule schedules[] = {
        every(6h, 20min),
        cron_schedule("0 3 * * *", 1h, 15min),
        cron_schedule("*/30 * * * *", 1h, 2h),
        cron_schedule("0 12 13 * FRI", 1min, 5min),
    };
    const TimePoint base = utc("2024-02-27 00:00");
    for (const RotationSchedule &s : schedules) {
        for (int step = 0; step < 24 * 7; ++step) {
            const TimePoint now = base + step * 37min;
            for (std::optional<TimePoint> last :
                 {std::optional<TimePoint>(), std::optional<TimePoint>(now - 2h),
                  std::optional<TimePoint>(now - 50h)}) {
                for (double u : {0.0, 0.3, kAlmostOne}) {
                    const TimePoint start = next_rotation(s, last, now, u);
                    ASSERT_GE(start, now);
                    EXPECT_TRUE(may_start(s, last, start))
                        << show(now) << " last " << show(last) << " u " << u << " start "
                        << show(start);
                }
            }
        }
    }
}

// ---- Reading -------------------------------------------------------------------------------

struct ReadResult {
    std::optional<RotationSchedule> schedule;
    std::vector<std::string> errors;
};

ReadResult read(const char *text) {
    const boost::json::value value = boost::json::parse(text);
    const JsonPath root;
    const JsonPath secrets(root, "secrets");
    const JsonPath first(secrets, std::size_t{0});
    const JsonPath path(first, "schedule");
    JsonErrors errors;
    ReadResult out;
    out.schedule = read_schedule(value, path, errors);
    out.errors = errors.lines();
    return out;
}

TEST(ScheduleRead, ReadsAnEverySchedule) {
    ReadResult r = read(R"({"every": "30d", "jitter": "10m"})");
    ASSERT_TRUE(r.schedule) << r.errors.at(0);
    EXPECT_EQ(*r.schedule, every(30 * 24h, 10min));
}

TEST(ScheduleRead, ReadsACronScheduleWithWindowAndJitter) {
    ReadResult r = read(R"({"cron": "0 3 * * SUN", "window": "2h", "jitter": "15m"})");
    ASSERT_TRUE(r.schedule) << r.errors.at(0);
    EXPECT_EQ(*r.schedule, cron_schedule("0 3 * * 0", 2h, 15min));
}

TEST(ScheduleRead, TakesDurationsInSecondsAndDefaultsTheWindowAndJitter) {
    ReadResult r = read(R"({"every": 90})");
    ASSERT_TRUE(r.schedule);
    EXPECT_EQ(*r.schedule, every(90s));
    r = read(R"({"cron": "@daily", "window": 600.5})");
    ASSERT_TRUE(r.schedule);
    EXPECT_EQ(r.schedule->window, Duration(600500ms));
    EXPECT_EQ(read(R"({"cron": "@daily"})").schedule, cron_schedule("0 0 * * *", 1h, 0s));
}

TEST(ScheduleRead, RejectsMistakesNamingTheirPath) {
    const std::string durations = " (seconds, or text such as \"30s\", \"5m\")";
    const std::pair<const char *, std::vector<std::string>> cases[] = {
        {R"({"cron": "0 24 * * *"})",
         {"secrets[0].schedule.cron: field 2 (hour): 24 is out of range 0-23"}},
        {R"({"every": "30d", "cron": "0 3 * * *"})",
         {"secrets[0].schedule: give either \"every\" or \"cron\", not both"}},
        {R"({"jitter": "1m"})",
         {"secrets[0].schedule: expected \"every\" (a period) or \"cron\" (an expression)"}},
        {R"({"every": "30d", "at": "03:00"})", {"secrets[0].schedule.at: unknown key"}},
        {R"({"every": "30d", "window": "1h"})",
         {"secrets[0].schedule.window: applies only to a cron schedule"}},
        {R"({"every": "500ms"})",
         {"secrets[0].schedule.every: expected a duration from 1 s to 315360000 s" + durations}},
        {R"({"every": "30 days"})",
         {"secrets[0].schedule.every: expected a duration from 1 s to 315360000 s" + durations}},
        {R"({"cron": "0 3 * * *", "window": "30s"})",
         {"secrets[0].schedule.window: expected a duration from 60 s to 31622400 s" + durations}},
        {R"({"cron": "0 3 * * *", "jitter": -1})",
         {"secrets[0].schedule.jitter: expected a duration from 0 s to 31622400 s" + durations}},
        {R"({"every": "1h", "jitter": "2h"})",
         {"secrets[0].schedule.jitter: must not be longer than the period (\"every\")"}},
        {R"({"cron": "0 0 30 2 *"})",
         {"secrets[0].schedule.cron: never fires: none of the selected months has the "
          "selected day of the month"}},
        {R"({"cron": 5})", {"secrets[0].schedule.cron: expected a string"}},
        {R"("30d")", {"secrets[0].schedule: expected an object"}},
        {R"({"cron": "0 3 * *", "window": "0", "color": "red"})",
         {"secrets[0].schedule.color: unknown key",
          "secrets[0].schedule.cron: expected 5 fields (minute hour day-of-month month "
          "day-of-week), found 4",
          "secrets[0].schedule.window: expected a duration from 60 s to 31622400 s" + durations}},
    };
    for (const auto &[text, expected] : cases) {
        ReadResult r = read(text);
        EXPECT_FALSE(r.schedule) << text;
        EXPECT_EQ(r.errors, expected) << text;
    }
}

}  // namespace
}  // namespace keyturn
