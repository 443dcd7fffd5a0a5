#include "core/duration.hpp"

#include <charconv>
#include <cmath>

namespace keyturn {

std::optional<Duration> parse_duration(std::string_view text) {
    double number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc() || end == text.data()) return std::nullopt;

    std::string_view unit(end, text.data() + text.size() - end);
    double scale = 0;
    if (unit.empty() || unit == "s") {
        scale = 1;
    } else if (unit == "ms") {
        scale = 1e-3;
    } else if (unit == "m") {
        scale = 60;
    } else if (unit == "h") {
        scale = 3600;
    } else if (unit == "d") {
        scale = 86400;
    } else {
        return std::nullopt;
    }

    double seconds = number * scale;
    // Bounded to a century so that adding it to a time point cannot overflow.
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 100.0 * 365 * 86400) {
        return std::nullopt;
    }
    return seconds_to_duration(seconds);
}

}  // namespace keyturn
