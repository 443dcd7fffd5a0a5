#pragma once
// What the engine tells its subscribers and its logger. An Event names a credential
// or a secret and what happened to it; it carries fingerprints, never values.

#include <cstdint>
#include <optional>
#include <string>

#include "core/clock.hpp"

namespace keyturn {

enum class EventType {
    refreshed,
    refresh_failed,
    expiring,
    expired,
    removed,
    // Rotation of a secret: a rotation began, one step succeeded, the rotation
    // finished, a step failed, a version id was given up after repeated failures.
    rotation_started,
    rotation_step,
    rotated,
    rotation_failed,
    rotation_abandoned,
};

// True for the event types about a secret rather than a credential.
bool is_rotation_event(EventType type) noexcept;

const char *event_type_name(EventType type) noexcept;

struct Event {
    EventType type;
    // The credential's id, or the secret's when `secret` is true.
    std::string credential;
    bool secret = false;
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
    // rotation events: `credential` holds the secret's id
    std::string rotation_version;
    std::string step;
    std::string reason;
    std::optional<TimePoint> next_rotation_at;

    std::string to_json() const;
    // One line for operators: the credential, what happened and why.
    std::string to_log_line() const;
};

enum class LogLevel : int { debug = 10, info = 20, warning = 30, error = 40 };

LogLevel log_level_of(EventType type, bool persisted) noexcept;

}  // namespace keyturn
