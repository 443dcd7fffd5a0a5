#include "bindings/cli/status_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include <boost/json.hpp>

namespace keyturn::agent {

namespace json = boost::json;

namespace {

using Row = std::vector<std::string>;

std::string text_of(const json::value *v) {
    if (v == nullptr || v->is_null()) return "-";
    if (v->is_string()) return v->get_string().empty() ? "-" : std::string(v->get_string());
    if (v->is_int64()) return std::to_string(v->get_int64());
    if (v->is_uint64()) return std::to_string(v->get_uint64());
    return json::serialize(*v);
}

const json::value *member(const json::value &o, std::string_view key) {
    const json::object *obj = o.if_object();
    return obj != nullptr ? obj->if_contains(key) : nullptr;
}

std::optional<double> number(const json::value *v) {
    if (v == nullptr || !v->is_number()) return std::nullopt;
    return v->to_number<double>();
}

// "in 45s", "45s ago" or "-", relative to the agent's clock.
std::string relative(const json::value *at, double now) {
    auto t = number(at);
    if (!t) return "-";
    const double delta = *t - now;
    if (delta >= 0) return "in " + human_duration(delta);
    return human_duration(-delta) + " ago";
}

// Messages are one line in a table cell.
std::string one_line(std::string s) {
    std::replace_if(
        s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
    return s;
}

std::string render(const Row &header, const std::vector<Row> &rows) {
    std::vector<std::size_t> width(header.size());
    for (std::size_t i = 0; i < header.size(); ++i)
        width[i] = header[i].size();
    for (const Row &r : rows)
        for (std::size_t i = 0; i < r.size(); ++i)
            width[i] = std::max(width[i], r[i].size());
    std::string out;
    auto line = [&](const Row &r) {
        std::string l;
        for (std::size_t i = 0; i < r.size(); ++i) {
            l += r[i];
            if (i + 1 < r.size()) l += std::string(width[i] - r[i].size() + 2, ' ');
        }
        out += l + "\n";
    };
    line(header);
    for (const Row &r : rows)
        line(r);
    return out;
}

std::string credential_expiry(const json::value &c, double now) {
    auto t = number(member(c, "expires_at"));
    if (!t) return "-";
    if (*t <= now) return "expired " + human_duration(now - *t) + " ago";
    return human_duration(*t - now);
}

std::string secret_result(const json::value &s, double now) {
    const std::string error = text_of(member(s, "last_error"));
    if (error != "-") return "error: " + one_line(error);
    if (const json::value *r = member(s, "rotation"); r != nullptr && r->is_object()) {
        return "rotating to " + text_of(member(*r, "version")) + ", next step " +
               text_of(member(*r, "next_step"));
    }
    if (number(member(s, "last_rotated"))) {
        return "rotated " + relative(member(s, "last_rotated"), now);
    }
    return "-";
}

}  // namespace

std::string human_duration(double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    char buf[32];
    if (seconds < 10) {
        std::snprintf(buf, sizeof buf, "%.1fs", seconds);
        return buf;
    }
    const auto s = static_cast<long long>(std::llround(seconds));
    if (s < 60) {
        std::snprintf(buf, sizeof buf, "%llds", s);
    } else if (s < 3600) {
        std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
    } else if (s < 86400) {
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
    } else {
        std::snprintf(buf, sizeof buf, "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
    }
    return buf;
}

std::string format_status_table(const json::object &answer) {
    double now = 0;
    if (const json::value *t = answer.if_contains("time"); t && t->is_number()) {
        now = t->to_number<double>();
    }
    std::string out;

    std::vector<Row> rows;
    if (const json::value *cs = answer.if_contains("credentials"); cs && cs->is_array()) {
        for (const json::value &c : cs->get_array()) {
            rows.push_back({text_of(member(c, "id")), text_of(member(c, "state")),
                            text_of(member(c, "version")), credential_expiry(c, now),
                            relative(member(c, "next_refresh_at"), now),
                            one_line(text_of(member(c, "last_error")))});
        }
    }
    if (rows.empty()) {
        out += "no credentials\n";
    } else {
        out += render(
            {"CREDENTIAL", "STATE", "VERSION", "EXPIRES IN", "NEXT REFRESH", "LAST ERROR"}, rows);
    }

    rows.clear();
    if (const json::value *ss = answer.if_contains("secrets"); ss && ss->is_array()) {
        for (const json::value &s : ss->get_array()) {
            const json::value *current = member(s, "current");
            rows.push_back({text_of(member(s, "id")), text_of(member(s, "state")),
                            current != nullptr && current->is_object()
                                ? text_of(member(*current, "version"))
                                : "-",
                            relative(member(s, "next_at"), now), secret_result(s, now)});
        }
    }
    out += "\n";
    if (rows.empty()) {
        out += "no secrets\n";
    } else {
        out += render({"SECRET", "STATE", "CURRENT VERSION", "NEXT ROTATION", "LAST RESULT"}, rows);
    }
    return out;
}

}  // namespace keyturn::agent
