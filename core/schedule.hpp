#pragma once
// When to rotate a secret: every fixed period, or at the fire times of a cron
// expression. Pure functions of their arguments, like the refresh policy: the caller
// supplies the time, the last rotation and the random draw, and no function here
// reads a clock or does I/O. All times are UTC.
//
// How the engine uses them: after each rotation (and at start-up) it asks
// next_rotation() for the moment to start the next one and arms a timer. When the
// timer fires, possibly late, it asks may_start(); if the answer is no (a cron
// window closed while the agent was busy or down), it asks next_rotation() again.

#include <bitset>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/fwd.hpp>

#include "core/clock.hpp"

namespace keyturn {

// A five-field cron expression, "minute hour day-of-month month day-of-week",
// reduced to the set of values each field selects.
struct CronExpr {
    std::bitset<60> minutes;        // 0-59
    std::bitset<24> hours;          // 0-23
    std::bitset<32> days_of_month;  // 1-31; bit 0 is unused
    std::bitset<13> months;         // 1-12; bit 0 is unused
    std::bitset<7> days_of_week;    // 0-6, 0 is Sunday (7 in the text is folded onto 0)

    // False when the field was written as a bare "*". When both day fields are
    // restricted, a day matches if either field matches it; otherwise both must match
    // (and the unrestricted one matches every day). Unlike Vixie cron, "*/2" counts as
    // restricted: only the bare star lifts the restriction.
    bool day_of_month_restricted = false;
    bool day_of_week_restricted = false;

    bool operator==(const CronExpr &) const = default;
};

// Parses a standard five-field cron expression, evaluated in UTC. Fields are
// separated by spaces or tabs; each is a comma-separated list of items, and an item
// is "*", a number, a range "a-b", or a step "*/n" or "a-b/n" (a bare "a/n" is
// rejected). Months accept JAN-DEC and days of the week SUN-SAT, in any case; day of
// the week 7 is Sunday, like 0. The shorthands @yearly, @annually, @monthly,
// @weekly, @daily, @midnight and @hourly are accepted; @reboot is not.
//
// On failure returns nothing and, when `error` is not null, stores a message that
// names the field and the problem: `field 2 (hour): 24 is out of range 0-23`.
// An expression that can never fire (such as "0 0 30 2 *") parses; see
// cron_can_fire().
std::optional<CronExpr> parse_cron(std::string_view text, std::string *error = nullptr);

// The first minute selected by `cron` that starts strictly after `after`. Skips
// whole months, days and hours that cannot match, so a call costs at most a few
// thousand steps. Returns nothing when no such minute falls within ten years (long
// enough to reach the 29th of February across 2100, which is not a leap year), and
// for times within ten years of the end of TimePoint's range.
std::optional<TimePoint> next_cron_fire(const CronExpr &cron, TimePoint after);

// False when `cron` selects no day that exists: a day of the month that none of the
// selected months has (the 30th of February), with the day of the week unrestricted.
// Such an expression never fires; read_schedule() rejects it.
bool cron_can_fire(const CronExpr &cron);

inline constexpr Duration kDefaultCronWindow = std::chrono::hours(1);

struct RotationSchedule {
    enum class Kind { every, cron };
    Kind kind = Kind::every;

    // Kind every: rotate this long after the last rotation. Must be positive.
    Duration period = std::chrono::hours(24 * 30);

    // Kind cron: a rotation may start only within [fire time, fire time + window),
    // and one that cannot waits for the next fire time. The window must be positive.
    CronExpr cron;
    Duration window = kDefaultCronWindow;

    // Each secret's start is delayed by a random offset in [0, jitter), so that
    // secrets on the same schedule do not all rotate at once. Under cron the jitter
    // is clamped to half the window, so that a jittered start stays inside it even late.
    Duration jitter = Duration::zero();

    bool operator==(const RotationSchedule &) const = default;
};

// The offset in [0, jitter) that the uniform draw `random01` in [0, 1) gives, with
// the jitter clamped to half the window under cron. Zero when the jitter is zero.
Duration jitter_offset(const RotationSchedule &schedule, double random01);

// When to start the next rotation of a secret last rotated at `last_rotated`
// (nothing: never rotated), asked at `now`, with the uniform draw `random01` in
// [0, 1) choosing the jitter offset. Never before `now`.
//
// Every: a secret never rotated is due now; otherwise at last_rotated + period, or
// now if that has passed (the agent was down). The jitter offset is added in both
// cases, so the period is the least spacing between rotations, not an exact one.
//
// Cron: a fire time counts only when it is after `last_rotated` (a rotation inside
// a window uses that window up). When `now` lies inside the window of such a fire
// time f, the result is the later of now and f + offset; when it lies in several,
// the earliest f is taken. Otherwise the result is the next such fire time after
// now, plus the offset. kNever when the expression never fires again.
TimePoint next_rotation(const RotationSchedule &schedule, std::optional<TimePoint> last_rotated,
                        TimePoint now, double random01);

// True when a rotation may start at `now`, for the engine to ask when a start that
// next_rotation() gave comes due (it may be late). Every: once the period since
// `last_rotated` has passed, or when never rotated. Cron: when `now` lies inside the
// window of a fire time after `last_rotated`. Jitter is not considered: a start that
// next_rotation() returned is always allowed at that very moment.
bool may_start(const RotationSchedule &schedule, std::optional<TimePoint> last_rotated,
               TimePoint now);

class JsonErrors;
class JsonPath;

// Reads a schedule such as {"every": "30d", "jitter": "10m"} or
// {"cron": "0 3 * * SUN", "window": "2h", "jitter": "15m"}. Durations are seconds
// or text with a unit ("90m"). Exactly one of "every" (at least 1 s) and "cron" is
// required; "window" (at least 1 minute) applies only to cron; "jitter" is at least
// zero and, under every, no longer than the period. Unknown keys are rejected.
// Returns nothing after recording every mistake in `errors`, each with its path:
// `secrets[0].schedule.cron: field 2 (hour): 24 is out of range 0-23`.
std::optional<RotationSchedule> read_schedule(const boost::json::value &value, const JsonPath &path,
                                              JsonErrors &errors);

}  // namespace keyturn
