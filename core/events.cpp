#include "core/events.hpp"

#include <boost/json.hpp>

#include <cstdio>

namespace keyturn {

namespace json = boost::json;

const char *event_type_name(EventType type) noexcept {
    switch (type) {
        case EventType::refreshed:
            return "refreshed";
        case EventType::refresh_failed:
            return "refresh_failed";
        case EventType::expiring:
            return "expiring";
        case EventType::expired:
            return "expired";
        case EventType::removed:
            return "removed";
    }
    return "unknown";
}

LogLevel log_level_of(EventType type, bool persisted) noexcept {
    switch (type) {
        case EventType::refreshed:
            return persisted ? LogLevel::info : LogLevel::error;
        case EventType::refresh_failed:
            return LogLevel::warning;
        case EventType::expiring:
            return LogLevel::warning;
        case EventType::expired:
            return LogLevel::error;
        case EventType::removed:
            return LogLevel::info;
    }
    return LogLevel::info;
}

std::string Event::to_json() const {
    json::object o;
    o["type"] = event_type_name(type);
    o["credential"] = credential;
    o["time"] = to_unix_seconds(time);
    auto put_time = [&](const char *key, const std::optional<TimePoint> &t) {
        if (t) {
            o[key] = to_unix_seconds(*t);
        } else {
            o[key] = nullptr;
        }
    };
    switch (type) {
        case EventType::refreshed:
            o["version"] = version;
            o["fingerprint"] = fingerprint;
            put_time("expires_at", expires_at);
            put_time("next_refresh_at", next_refresh_at);
            o["persisted"] = persisted;
            if (!error.empty()) o["error"] = error;
            break;
        case EventType::refresh_failed:
            o["error"] = error;
            o["attempt"] = attempt;
            o["action"] = action;
            put_time("retry_at", retry_at);
            break;
        case EventType::expiring:
        case EventType::expired:
            put_time("expires_at", expires_at);
            break;
        case EventType::removed:
            break;
    }
    return json::serialize(o);
}

namespace {
std::string in_seconds(TimePoint from, std::optional<TimePoint> to) {
    if (!to) return "never";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1fs", to_seconds(*to - from));
    return buf;
}
}  // namespace

std::string Event::to_log_line() const {
    std::string line = "credential \"" + credential + "\": ";
    switch (type) {
        case EventType::refreshed:
            line += "refreshed to version " + std::to_string(version) + " (" + fingerprint +
                    "), expires in " + in_seconds(time, expires_at) + ", next refresh in " +
                    in_seconds(time, next_refresh_at);
            if (!persisted) line += "; NOT persisted: " + error;
            break;
        case EventType::refresh_failed:
            line += "refresh failed (attempt " + std::to_string(attempt) + "): " + error;
            line += retry_at ? "; retrying in " + in_seconds(time, retry_at)
                             : "; not retrying (" + action + ")";
            break;
        case EventType::expiring:
            line += "expiring in " + in_seconds(time, expires_at) + " and the last refresh failed";
            break;
        case EventType::expired:
            line += "expired; no valid value remains";
            break;
        case EventType::removed:
            line += "removed";
            break;
    }
    return line;
}

}  // namespace keyturn
