#pragma once
// Durations in configuration: a number of seconds, or text with a unit.

#include <optional>
#include <string_view>

#include "core/clock.hpp"

namespace keyturn {

// Parses "250ms", "30s", "5m", "2h", "1d" or a bare number of seconds ("1.5").
// Returns nothing for anything else, including negative values.
std::optional<Duration> parse_duration(std::string_view text);

}  // namespace keyturn
