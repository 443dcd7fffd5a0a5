#include "core/json_refresh.hpp"

#include <boost/json.hpp>

#include <charconv>
#include <ctime>

#include "core/hook_provider.hpp"
#include "core/json_support.hpp"
#include "core/oauth2.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

std::optional<std::string> check_json_pointer(std::string_view pointer) {
    if (pointer.empty()) return "must not be empty (the whole document is not a value)";
    if (pointer.front() != '/') return "must start with \"/\" (a JSON Pointer, RFC 6901)";
    for (std::size_t i = 0; i < pointer.size(); ++i) {
        if (pointer[i] == '~' &&
            (i + 1 == pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1'))) {
            return "has a \"~\" that is not \"~0\" or \"~1\"";
        }
    }
    return std::nullopt;
}

namespace {

constexpr std::string_view kOpen = "{{";
constexpr std::string_view kClose = "}}";

void append_json_escaped(std::string &out, std::string_view text) {
    // append_json_string adds the quotes; a template places the value inside its own.
    std::string quoted;
    quoted.reserve(text.size() + 2);
    append_json_string(quoted, text);
    out.append(quoted, 1, quoted.size() - 2);
    cleanse(quoted);
}

}  // namespace

bool uses_placeholders(std::string_view text, std::vector<std::string> *names) {
    bool any = false;
    for (std::size_t at = text.find(kOpen); at != std::string_view::npos;
         at = text.find(kOpen, at + kOpen.size())) {
        const std::size_t end = text.find(kClose, at + kOpen.size());
        if (end == std::string_view::npos) break;
        any = true;
        if (names) names->emplace_back(text.substr(at + 2, end - at - 2));
    }
    return any;
}

void render_template(ScrubbedString &out, std::string_view text, TemplateEncoding encoding,
                     const SecretBytes *value, const SecretBytes *refresh) {
    std::string &o = out.str();
    std::size_t room = text.size();
    if (value) room += 6 * value->size();
    if (refresh) room += 6 * refresh->size();
    o.reserve(o.size() + room);  // no regrowth: no unscrubbed copies left behind
    std::size_t from = 0;
    for (std::size_t at = text.find(kOpen); at != std::string_view::npos;
         at = text.find(kOpen, from)) {
        const std::size_t end = text.find(kClose, at + kOpen.size());
        if (end == std::string_view::npos) break;
        o.append(text.substr(from, at - from));
        const std::string_view name = text.substr(at + 2, end - at - 2);
        const SecretBytes *secret = nullptr;
        if (name == "value") {
            secret = value;
        } else if (name == "refresh") {
            secret = refresh;
        } else {
            throw Error(Status::config, "unknown placeholder {{" + std::string(name.substr(0, 32)) +
                                            "}}: expected {{value}} or {{refresh}}");
        }
        if (secret == nullptr) {
            throw Error(Status::config, "the template uses {{" + std::string(name) +
                                            "}} but the credential has none");
        }
        switch (encoding) {
            case TemplateEncoding::json:
                append_json_escaped(o, secret->reveal());
                break;
            case TemplateEncoding::form:
                append_form_encoded(o, secret->reveal());
                break;
            case TemplateEncoding::header:
                if (secret->reveal().find_first_of(std::string_view("\r\n\0", 3)) !=
                    std::string_view::npos) {
                    throw Error(Status::config, "{{" + std::string(name) +
                                                    "}} holds a line break or NUL and cannot "
                                                    "go into a header");
                }
                o.append(secret->reveal());
                break;
        }
        from = end + kClose.size();
    }
    o.append(text.substr(from));
}

namespace {

std::optional<double> seconds_of(const json::value &v) {
    if (v.is_number()) return v.to_number<double>();
    if (v.is_string()) {
        const json::string &s = v.get_string();
        double d = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
        if (ec == std::errc() && end == s.data() + s.size()) return d;
    }
    return std::nullopt;
}

// "2026-12-03T18:23:01Z", "2026-12-03T18:23:01.5+01:00": RFC 3339 date-times.
std::optional<TimePoint> parse_rfc3339(std::string_view s) {
    int y, mo, d, h, mi;
    double sec;
    char tail[16] = {0};
    std::string text(s.substr(0, 64));
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%lf%15s", &y, &mo, &d, &h, &mi, &sec, tail) <
        6) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = 0;
    const std::time_t base = timegm(&tm);
    if (base == static_cast<std::time_t>(-1)) return std::nullopt;
    double offset = 0;
    std::string_view zone(tail);
    if (zone == "Z" || zone == "z") {
        offset = 0;
    } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
        const int oh = (zone[1] - '0') * 10 + (zone[2] - '0');
        const int om = (zone[4] - '0') * 10 + (zone[5] - '0');
        offset = (zone[0] == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
    } else {
        return std::nullopt;
    }
    return from_unix_seconds(static_cast<double>(base) + sec - offset);
}

const json::value *at_pointer(const json::value &doc, const std::string &pointer) {
    boost::system::error_code ec;
    const json::value *v = doc.find_pointer(pointer, ec);
    return ec ? nullptr : v;
}

}  // namespace

RefreshOutcome interpret_json_refresh(int status, std::string_view body,
                                      std::optional<Duration> retry_after,
                                      const JsonResponseMapping &mapping, TimePoint now,
                                      Duration default_lifetime) {
    if (status < 200 || status > 299) {
        RefreshFailure f{"refresh endpoint answered HTTP " + std::to_string(status),
                         FailureAction::retry, retry_after};
        if (status == 400 || status == 401 || status == 403) {
            f.action = FailureAction::give_up;
            f.reason += ": the request or its credentials were refused";
        } else if (status != 429 && status < 500) {
            f.action = FailureAction::give_up;
        }
        return f;
    }
    auto bad = [&](const std::string &why) {
        return RefreshFailure{"refresh response: " + why, FailureAction::retry, retry_after};
    };
    json::value doc;
    try {
        doc = parse_secret_json(body, "refresh response");
    } catch (const Error &e) {
        return RefreshFailure{e.what(), FailureAction::retry, retry_after};
    }
    const json::value *value = at_pointer(doc, mapping.value);
    if (value == nullptr || !value->is_string() || value->get_string().empty()) {
        return bad("no non-empty string at " + mapping.value);
    }
    if (value->get_string().size() > kMaxValueSize) {
        return bad("the value at " + mapping.value + " is larger than 1 MiB");
    }
    RefreshSuccess s;
    s.value = SecretBytes(std::string_view(value->get_string()));
    if (mapping.refresh) {
        if (const json::value *r = at_pointer(doc, *mapping.refresh)) {
            if (!r->is_string() || r->get_string().empty()) {
                return bad("the refresh material at " + *mapping.refresh +
                           " is not a non-empty string");
            }
            s.refresh = SecretBytes(std::string_view(r->get_string()));
        }
    }
    if (mapping.expires_at) {
        const json::value *e = at_pointer(doc, *mapping.expires_at);
        if (e == nullptr) return bad("no expiry at " + *mapping.expires_at);
        std::optional<TimePoint> at;
        if (auto secs = seconds_of(*e)) {
            if (*secs > 0 && *secs < 1e11) at = from_unix_seconds(*secs);
        } else if (e->is_string()) {
            at = parse_rfc3339(e->get_string());
        }
        if (!at) {
            return bad("the expiry at " + *mapping.expires_at +
                       " is not unix seconds or an RFC 3339 time");
        }
        s.expires_at = *at;
    } else if (mapping.expires_in) {
        const json::value *e = at_pointer(doc, *mapping.expires_in);
        std::optional<double> secs = e ? seconds_of(*e) : std::nullopt;
        if (!secs || !(*secs >= 0) || *secs > 100.0 * 365 * 86400) {
            return bad("no lifetime in seconds at " + *mapping.expires_in);
        }
        s.expires_in = seconds_to_duration(*secs);
    } else {
        s.expires_in = default_lifetime;
    }
    (void)now;
    return s;
}

namespace {

// A JSON object parsed from text that holds secrets; Error(config) naming `what` if the
// text is not one.
json::value secret_object(std::string_view text, std::string_view what) {
    json::value doc;
    try {
        doc = parse_secret_json(text, what);
    } catch (const Error &e) {
        throw Error(Status::config, e.what());
    }
    if (!doc.is_object()) {
        throw Error(Status::config, std::string(what) + ": expected a JSON object");
    }
    return doc;
}

}  // namespace

SecretBytes refresh_token_field(std::string_view text, std::string_view field) {
    const json::value doc = secret_object(text, "the secret's fields");
    const json::value *v = doc.get_object().if_contains(field);
    if (v == nullptr) {
        throw Error(Status::config, "the secret has no field \"" + std::string(field) + "\"");
    }
    if (!v->is_string() || v->get_string().empty()) {
        throw Error(Status::config,
                    "field \"" + std::string(field) + "\": expected a non-empty string");
    }
    return SecretBytes(std::string_view(v->get_string()));
}

Snapshot parse_token_document(std::string_view text, TimePoint now) {
    const json::value doc = secret_object(text, "token document");
    const json::object *o = &doc.get_object();
    JsonErrors errors;
    const json::value *auth = o->if_contains("authToken");
    if (auth == nullptr || !auth->is_string() || auth->get_string().empty()) {
        errors.add("authToken", "expected a non-empty string");
    }
    const json::value *refresh = o->if_contains("refreshToken");
    if (refresh != nullptr && (!refresh->is_string() || refresh->get_string().empty())) {
        errors.add("refreshToken", "expected a non-empty string");
    }
    const json::value *until = o->if_contains("validUntil");
    std::optional<double> secs = until ? seconds_of(*until) : std::nullopt;
    if (!secs || *secs <= 0 || *secs > 1e11) {
        errors.add("validUntil", "expected unix seconds");
    }
    if (!errors.empty()) throw Error(Status::config, "token document: " + errors.text());
    Snapshot s;
    s.value = SecretBytes(std::string_view(auth->get_string()));
    if (refresh) s.refresh = SecretBytes(std::string_view(refresh->get_string()));
    s.issued_at = now;
    s.expires_at = from_unix_seconds(secs.value_or(0));  // checked above
    s.version = 1;
    return s;
}

}  // namespace keyturn
