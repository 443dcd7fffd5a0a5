#include "core/events.hpp"

#include <cstdio>

#include "core/hook_provider.hpp"

namespace keyturn {

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
        case EventType::rotation_started:
            return "rotation_started";
        case EventType::rotation_step:
            return "rotation_step";
        case EventType::rotated:
            return "rotated";
        case EventType::rotation_failed:
            return "rotation_failed";
        case EventType::rotation_abandoned:
            return "rotation_abandoned";
    }
    return "unknown";
}

bool is_rotation_event(EventType type) noexcept {
    switch (type) {
        case EventType::rotation_started:
        case EventType::rotation_step:
        case EventType::rotated:
        case EventType::rotation_failed:
        case EventType::rotation_abandoned:
            return true;
        default:
            return false;
    }
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
        case EventType::rotation_started:
        case EventType::rotated:
            return LogLevel::info;
        case EventType::rotation_step:
            return LogLevel::debug;
        case EventType::rotation_failed:
            return LogLevel::warning;
        case EventType::rotation_abandoned:
            return LogLevel::error;
    }
    return LogLevel::info;
}

namespace {

// Writes one flat JSON object in field order. Times are unix seconds with three
// decimals, which reads better in a log than the shortest round-trip form.
class FieldWriter {
  public:
    FieldWriter() { out_ += '{'; }
    FieldWriter &text(std::string_view key, std::string_view value) {
        name(key);
        append_json_string(out_, value);
        return *this;
    }
    FieldWriter &integer(std::string_view key, std::uint64_t value) {
        name(key);
        out_ += std::to_string(value);
        return *this;
    }
    FieldWriter &boolean(std::string_view key, bool value) {
        name(key);
        out_ += value ? "true" : "false";
        return *this;
    }
    FieldWriter &time(std::string_view key, const std::optional<TimePoint> &t) {
        name(key);
        if (!t) {
            out_ += "null";
            return *this;
        }
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3f", to_unix_seconds(*t));
        out_ += buf;
        return *this;
    }
    std::string finish() {
        out_ += '}';
        return std::move(out_);
    }

  private:
    void name(std::string_view key) {
        if (out_.size() > 1) out_ += ',';
        append_json_string(out_, key);
        out_ += ':';
    }
    std::string out_;
};

}  // namespace

std::string Event::to_json() const {
    FieldWriter w;
    w.text("type", event_type_name(type))
        .text(secret ? "secret" : "credential", credential)
        .time("time", time);
    switch (type) {
        case EventType::rotation_started:
            w.text("version", rotation_version).text("reason", reason);
            break;
        case EventType::rotation_step:
            w.text("version", rotation_version).text("step", step);
            break;
        case EventType::rotated:
            w.text("version", rotation_version)
                .text("fingerprint", fingerprint)
                .time("next_rotation_at", next_rotation_at);
            break;
        case EventType::rotation_failed:
            w.text("version", rotation_version)
                .text("step", step)
                .text("error", error)
                .integer("attempt", static_cast<std::uint64_t>(attempt))
                .time("retry_at", retry_at);
            break;
        case EventType::rotation_abandoned:
            w.text("version", rotation_version)
                .text("step", step)
                .text("error", error)
                .integer("attempt", static_cast<std::uint64_t>(attempt))
                .time("retry_at", retry_at);
            break;
        case EventType::refreshed:
            w.integer("version", version)
                .text("fingerprint", fingerprint)
                .time("expires_at", expires_at)
                .time("next_refresh_at", next_refresh_at)
                .boolean("persisted", persisted);
            if (!error.empty()) w.text("error", error);
            break;
        case EventType::refresh_failed:
            w.text("error", error)
                .integer("attempt", static_cast<std::uint64_t>(attempt))
                .text("action", action)
                .time("retry_at", retry_at);
            break;
        case EventType::expiring:
        case EventType::expired:
            w.time("expires_at", expires_at);
            break;
        case EventType::removed:
            break;
    }
    return w.finish();
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
    std::string line = (secret ? "secret \"" : "credential \"") + credential + "\": ";
    switch (type) {
        case EventType::rotation_started:
            line += "rotation to version " + rotation_version + " started (" + reason + ")";
            break;
        case EventType::rotation_step:
            line += "step \"" + step + "\" of version " + rotation_version + " done";
            break;
        case EventType::rotated:
            line += "rotated to version " + rotation_version + " (" + fingerprint +
                    "), next rotation in " + in_seconds(time, next_rotation_at);
            break;
        case EventType::rotation_failed:
            line += "step \"" + step + "\" of version " + rotation_version + " failed (attempt " +
                    std::to_string(attempt) + "): " + error + "; retrying in " +
                    in_seconds(time, retry_at);
            break;
        case EventType::rotation_abandoned:
            line += "version " + rotation_version + " abandoned after " + std::to_string(attempt) +
                    " failed attempt(s), last at step \"" + step + "\": " + error +
                    "; a new version starts in " + in_seconds(time, retry_at);
            break;
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
