#include "core/schedule.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <span>
#include <vector>

#include "core/json_support.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

constexpr std::string_view kMonthNames[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                            "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::string_view kDayNames[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct FieldSpec {
    std::string_view name;
    int min;
    int max;
    // Names for min, min + 1, ...; empty for fields that take numbers only.
    std::span<const std::string_view> names;
    // How a mistaken value is described: "a number", "a month number or name (JAN-DEC)".
    std::string_view expected;
};

// Day of the week runs to 7 so that both 0 and 7 may name Sunday; 7 is folded onto 0
// once the field is read.
constexpr FieldSpec kFields[] = {
    {"minute", 0, 59, {}, "a number"},
    {"hour", 0, 23, {}, "a number"},
    {"day-of-month", 1, 31, {}, "a number"},
    {"month", 1, 12, kMonthNames, "a month number or name (JAN-DEC)"},
    {"day-of-week", 0, 7, kDayNames, "a day number or name (SUN-SAT)"},
};

struct Shorthand {
    std::string_view name;
    std::string_view expression;
};

constexpr Shorthand kShorthands[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
        return lower(x) == lower(y);
    });
}

std::string quoted(std::string_view text) {
    return "\"" + std::string(text) + "\"";
}

// Reads one whole, unsigned number; nothing for anything else.
std::optional<unsigned> whole_number(std::string_view text, bool &too_large) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    too_large = ec == std::errc::result_out_of_range;
    if (end != text.data() + text.size() || end == text.data()) return std::nullopt;
    if (ec != std::errc() && !too_large) return std::nullopt;
    return n;
}

// One value of a field, a number or a name. Returns why it is wrong, or nothing.
std::optional<std::string> read_value(const FieldSpec &field, std::string_view token,
                                      std::string_view item, int &out) {
    if (token.empty()) return "a value is missing in " + quoted(item);
    for (std::size_t i = 0; i < field.names.size(); ++i) {
        if (equals_ignoring_case(token, field.names[i])) {
            out = field.min + static_cast<int>(i);
            return std::nullopt;
        }
    }

    bool too_large = false;
    std::optional<unsigned> n = whole_number(token, too_large);
    if (!n && !too_large) return quoted(token) + " is not " + std::string(field.expected);
    if (too_large || *n < static_cast<unsigned>(field.min) ||
        *n > static_cast<unsigned>(field.max)) {
        return std::string(token) + " is out of range " + std::to_string(field.min) + "-" +
               std::to_string(field.max);
    }
    out = static_cast<int>(*n);
    return std::nullopt;
}

// One item of a list: "*", "a", "a-b", "*/n" or "a-b/n". Adds its values to `mask`.
std::optional<std::string> read_item(const FieldSpec &field, std::string_view item,
                                     std::uint64_t &mask) {
    std::string_view range = item;
    std::optional<std::string_view> step_text;
    if (auto slash = item.find('/'); slash != std::string_view::npos) {
        range = item.substr(0, slash);
        step_text = item.substr(slash + 1);
    }

    int low = field.min, high = field.max;
    if (range == "*") {
        // The whole field.
    } else if (auto dash = range.find('-'); dash != std::string_view::npos) {
        if (auto why = read_value(field, range.substr(0, dash), item, low)) return why;
        if (auto why = read_value(field, range.substr(dash + 1), item, high)) return why;
        if (low > high) return "range " + std::string(range) + " runs backwards";
    } else {
        if (step_text && !range.empty()) {
            // Some crons read "5/10" as 5-59/10, others reject it: ask for the plain form.
            return "a step needs a range: write " +
                   quoted(std::string(range) + "-" + std::to_string(field.max) + "/" +
                          std::string(*step_text)) +
                   " or " + quoted("*/" + std::string(*step_text));
        }
        if (auto why = read_value(field, range, item, low)) return why;
        high = low;
    }

    int step = 1;
    if (step_text) {
        const int largest = field.max - field.min;
        bool too_large = false;
        std::optional<unsigned> n = whole_number(*step_text, too_large);
        if (!n && !too_large) return "step " + quoted(*step_text) + " is not a number";
        if (too_large || *n < 1 || *n > static_cast<unsigned>(largest)) {
            return "step " + std::string(*step_text) + " is out of range 1-" +
                   std::to_string(largest);
        }
        step = static_cast<int>(*n);
    }

    for (int v = low; v <= high; v += step)
        mask |= std::uint64_t{1} << v;
    return std::nullopt;
}

// A whole field: a comma-separated list of items.
std::optional<std::string> read_field(const FieldSpec &field, std::string_view text,
                                      std::uint64_t &mask) {
    std::size_t begin = 0;
    while (true) {
        std::size_t comma = text.find(',', begin);
        std::string_view item = text.substr(begin, comma - begin);
        if (item.empty()) return "an empty item in the list " + quoted(text);
        if (auto why = read_item(field, item, mask)) return why;
        if (comma == std::string_view::npos) return std::nullopt;
        begin = comma + 1;
    }
}

std::vector<std::string_view> split_on_blanks(std::string_view text) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] == ' ' || text[i] == '\t') {
            ++i;
            continue;
        }
        std::size_t end = text.find_first_of(" \t", i);
        if (end == std::string_view::npos) end = text.size();
        words.push_back(text.substr(i, end - i));
        i = end;
    }
    return words;
}

bool day_matches(const CronExpr &cron, std::chrono::sys_days day) {
    const std::chrono::year_month_day date(day);
    const bool by_month = cron.days_of_month[static_cast<unsigned>(date.day())];
    const bool by_week = cron.days_of_week[std::chrono::weekday(day).c_encoding()];
    if (cron.day_of_month_restricted && cron.day_of_week_restricted) return by_month || by_week;
    return by_month && by_week;
}

// Ten years and a little: the longest gap between two 29ths of February is eight years.
constexpr std::chrono::days kSearchHorizon(3660);

}  // namespace

std::optional<CronExpr> parse_cron(std::string_view text, std::string *error) {
    auto fail = [error](std::string message) -> std::optional<CronExpr> {
        if (error != nullptr) *error = std::move(message);
        return std::nullopt;
    };

    std::vector<std::string_view> words = split_on_blanks(text);
    if (!words.empty() && words[0].starts_with('@')) {
        if (words.size() > 1) return fail("the shorthand " + quoted(words[0]) + " stands alone");
        for (const Shorthand &s : kShorthands) {
            if (equals_ignoring_case(words[0], s.name)) return parse_cron(s.expression, error);
        }
        return fail("unknown shorthand " + quoted(words[0]) +
                    "; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or "
                    "@hourly");
    }
    if (words.size() != std::size(kFields)) {
        return fail("expected 5 fields (minute hour day-of-month month day-of-week), found " +
                    std::to_string(words.size()));
    }

    std::uint64_t masks[std::size(kFields)] = {};
    for (std::size_t i = 0; i < std::size(kFields); ++i) {
        if (auto why = read_field(kFields[i], words[i], masks[i])) {
            return fail("field " + std::to_string(i + 1) + " (" + std::string(kFields[i].name) +
                        "): " + *why);
        }
    }

    CronExpr cron;
    cron.minutes = std::bitset<60>(masks[0]);
    cron.hours = std::bitset<24>(masks[1]);
    cron.days_of_month = std::bitset<32>(masks[2]);
    cron.months = std::bitset<13>(masks[3]);
    std::uint64_t week = masks[4];
    if (week & (std::uint64_t{1} << 7)) week |= 1;
    cron.days_of_week = std::bitset<7>(week & 0x7f);
    cron.day_of_month_restricted = words[2] != "*";
    cron.day_of_week_restricted = words[4] != "*";
    return cron;
}

std::optional<TimePoint> next_cron_fire(const CronExpr &cron, TimePoint after) {
    using namespace std::chrono;
    // Keep clear of the ends of the representable range, where rounding to days or
    // adding the horizon would overflow.
    if (after < TimePoint::min() + days(2) || after > TimePoint::max() - kSearchHorizon - days(2)) {
        return std::nullopt;
    }

    const sys_time<minutes> first = floor<minutes>(after) + minutes(1);
    sys_days day = floor<days>(first);
    const sys_days horizon = day + kSearchHorizon;
    int hour = static_cast<int>(duration_cast<hours>(first - day).count());
    int minute = static_cast<int>((duration_cast<minutes>(first - day) % 60).count());

    while (day < horizon) {
        const year_month_day date(day);
        if (!cron.months[static_cast<unsigned>(date.month())]) {
            day = sys_days((date.year() / date.month() + months(1)) / 1);
            hour = minute = 0;
            continue;
        }
        if (day_matches(cron, day)) {
            for (; hour < 24; ++hour, minute = 0) {
                if (!cron.hours[hour]) continue;
                for (; minute < 60; ++minute) {
                    if (cron.minutes[minute]) return TimePoint(day + hours(hour) + minutes(minute));
                }
            }
        }
        day += days(1);
        hour = minute = 0;
    }
    return std::nullopt;
}

bool cron_can_fire(const CronExpr &cron) {
    if (cron.minutes.none() || cron.hours.none() || cron.months.none() ||
        cron.days_of_month.none() || cron.days_of_week.none()) {
        return false;
    }
    // With both day fields restricted, any selected day of the week will do.
    if (!cron.day_of_month_restricted || cron.day_of_week_restricted) return true;

    constexpr int kLongest[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int earliest_day = 1;
    while (!cron.days_of_month[earliest_day])
        ++earliest_day;
    for (int m = 1; m <= 12; ++m) {
        if (cron.months[m] && kLongest[m] >= earliest_day) return true;
    }
    return false;
}

Duration jitter_offset(const RotationSchedule &schedule, double random01) {
    Duration span = schedule.jitter;
    // Under cron the offset stays in the first half of the window, so that a start the
    // timer delivers late (a busy or suspended machine) still falls inside it.
    if (schedule.kind == RotationSchedule::Kind::cron) span = std::min(span, schedule.window / 2);
    if (span <= Duration::zero()) return Duration::zero();

    // NaN and draws outside [0, 1) are pulled to the nearest end.
    const double u = random01 > 0 ? std::min(random01, 1.0) : 0.0;
    const auto offset = Duration(static_cast<Duration::rep>(u * static_cast<double>(span.count())));
    return std::min(offset, span - Duration(1));
}

namespace {

// The earliest fire time after `last_rotated` whose window has not closed at `now`:
// either one whose window holds `now`, or the next one after `now`.
std::optional<TimePoint> first_open_fire(const RotationSchedule &schedule,
                                         std::optional<TimePoint> last_rotated, TimePoint now) {
    TimePoint after = now - schedule.window;
    if (last_rotated) after = std::max(after, *last_rotated);
    return next_cron_fire(schedule.cron, after);
}

}  // namespace

TimePoint next_rotation(const RotationSchedule &schedule, std::optional<TimePoint> last_rotated,
                        TimePoint now, double random01) {
    const Duration offset = jitter_offset(schedule, random01);
    if (schedule.kind == RotationSchedule::Kind::every) {
        const TimePoint due = last_rotated ? std::max(*last_rotated + schedule.period, now) : now;
        return due + offset;
    }

    // A fire time inside whose window `now` lies gives max(now, fire + offset), which
    // stays inside the window since the offset is shorter than it; a later fire time
    // gives fire + offset, which is the same formula.
    std::optional<TimePoint> fire = first_open_fire(schedule, last_rotated, now);
    if (!fire) return kNever;
    return std::max(now, *fire + offset);
}

bool may_start(const RotationSchedule &schedule, std::optional<TimePoint> last_rotated,
               TimePoint now) {
    if (schedule.kind == RotationSchedule::Kind::every) {
        return !last_rotated || now >= *last_rotated + schedule.period;
    }
    std::optional<TimePoint> fire = first_open_fire(schedule, last_rotated, now);
    return fire && *fire <= now;
}

namespace {
constexpr Duration kLongestPeriod = std::chrono::hours(24 * 3650);
constexpr Duration kLongestWindowOrJitter = std::chrono::hours(24 * 366);
}  // namespace

std::optional<RotationSchedule> read_schedule(const json::value &value, const JsonPath &path,
                                              JsonErrors &errors) {
    const std::size_t errors_before = errors.lines().size();
    ObjectReader r(value, path, errors);
    if (!r.valid()) return std::nullopt;
    r.allow_only({"every", "cron", "window", "jitter"});

    RotationSchedule out;
    const bool has_every = r.has("every");
    const bool has_cron = r.has("cron");
    if (has_every && has_cron) {
        errors.add(path, "give either \"every\" or \"cron\", not both");
    } else if (!has_every && !has_cron) {
        errors.add(path, "expected \"every\" (a period) or \"cron\" (an expression)");
    }

    std::optional<Duration> period;
    if (has_every) {
        out.kind = RotationSchedule::Kind::every;
        period = r.duration("every", std::chrono::seconds(1), kLongestPeriod);
        if (period) out.period = *period;
    }

    if (has_cron) {
        out.kind = RotationSchedule::Kind::cron;
        if (auto text = r.string("cron")) {
            std::string why;
            if (auto cron = parse_cron(*text, &why)) {
                out.cron = *cron;
                if (!cron_can_fire(*cron)) {
                    errors.add(JsonPath(path, "cron"),
                               "never fires: none of the selected months has the selected "
                               "day of the month");
                }
            } else {
                errors.add(JsonPath(path, "cron"), why);
            }
        }
    }

    if (r.has("window")) {
        if (!has_cron) {
            errors.add(JsonPath(path, "window"), "applies only to a cron schedule");
        } else if (auto window =
                       r.duration("window", std::chrono::minutes(1), kLongestWindowOrJitter)) {
            out.window = *window;
        }
    }

    if (auto jitter = r.duration("jitter", Duration::zero(), kLongestWindowOrJitter)) {
        out.jitter = *jitter;
        if (period && !has_cron && *jitter > *period) {
            errors.add(JsonPath(path, "jitter"), "must not be longer than the period (\"every\")");
        }
    }

    if (errors.lines().size() != errors_before) return std::nullopt;
    return out;
}

}  // namespace keyturn
