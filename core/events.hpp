#pragma once
// What the engine tells its subscribers and its logger. An Event names a credential
// and what happened to it; it carries fingerprints, never values.

#include <cstdint>
#include <optional>
#include <string>

#include "core/clock.hpp"

namespace keyturn {

enum class EventType { refreshed, refresh_failed, expiring, expired, removed };

const char *event_type_name(EventType type) noexcept;

struct Event {
    EventType type;
    std::string credential;
    TimePoint time{};
    // refreshed
    std::uint64_t version = 0;
    std::string fingerprint;
    std::optional<TimePoint> expires_at;
    std::optional<TimePoint> next_refresh_at;
    bool persisted = true;
    // refresh_failed
    std::string error;
    int attempt = 0;
    std::string action;
    std::optional<TimePoint> retry_at;

    std::string to_json() const;
    // One line for operators: the credential, what happened and why.
    std::string to_log_line() const;
};

enum class LogLevel : int { debug = 10, info = 20, warning = 30, error = 40 };

LogLevel log_level_of(EventType type, bool persisted) noexcept;

}  // namespace keyturn
