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
    w.text("type", event_type_name(type)).text("credential", credential).time("time", time);
    switch (type) {
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
