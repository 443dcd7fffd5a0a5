#include "core/hook_provider.hpp"

#include <cstdio>

#include "core/json_support.hpp"
#include "core/spec.hpp"

namespace keyturn {

namespace json = boost::json;

void append_json_string(std::string &out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 0xf];
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

namespace {

void append_secret(std::string &out, std::string_view key, const SecretBytes &secret) {
    out += '"';
    out += key;
    if (is_utf8(secret.reveal())) {
        out += "\":";
        append_json_string(out, secret.reveal());
    } else {
        std::string encoded = base64_encode(secret.reveal());
        out += "_base64\":\"";
        out += encoded;
        out += '"';
        cleanse(encoded);
    }
}

void append_number(std::string &out, double d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", d);
    out += buf;
}

}  // namespace

void write_hook_request(ScrubbedString &request, const RefreshRequest &r, std::string_view step) {
    std::string &out = request.str();
    // Reserved up front for the worst case (every byte escaped as \u00XX, six
    // bytes): a string that grew would leave unscrubbed copies of secrets behind.
    std::size_t text_bytes = r.credential.size() + r.reason.size() + step.size();
    if (r.current) text_bytes += r.current->value.size();
    if (r.refresh) text_bytes += r.refresh->size();
    if (r.metadata != nullptr) {
        for (const auto &[k, v] : *r.metadata)
            text_bytes += k.size() + v.size() + 4;
    }
    out.reserve(256 + 6 * text_bytes);

    out += "{\"credential\":";
    append_json_string(out, r.credential);
    out += ",\"reason\":";
    append_json_string(out, r.reason);
    if (!step.empty()) {
        out += ",\"step\":";
        append_json_string(out, step);
    }
    out += ",\"attempt\":" + std::to_string(r.attempt);
    out += ",\"current\":";
    if (r.current == nullptr) {
        out += "null";
    } else {
        out += '{';
        append_secret(out, "value", r.current->value);
        out += ",\"version\":" + std::to_string(r.current->version);
        out += ",\"issued_at\":";
        append_number(out, to_unix_seconds(r.current->issued_at));
        out += ",\"expires_at\":";
        append_number(out, to_unix_seconds(r.current->expires_at));
        out += '}';
    }
    out += ',';
    if (r.refresh == nullptr) {
        out += "\"refresh\":null";
    } else {
        append_secret(out, "refresh", *r.refresh);
    }
    out += ",\"metadata\":{";
    bool first = true;
    if (r.metadata != nullptr) {
        for (const auto &[k, v] : *r.metadata) {
            if (!first) out += ',';
            first = false;
            append_json_string(out, k);
            out += ':';
            append_json_string(out, v);
        }
    }
    out += "}}";
}

RefreshOutcome parse_hook_result(std::string_view json_text) {
    if (json_text.size() > kMaxSpecSize) {
        throw Error(Status::config, "hook result is " + std::to_string(json_text.size()) +
                                        " bytes; at most " + std::to_string(kMaxSpecSize) +
                                        " are allowed");
    }
    json::value doc = parse_secret_json(json_text, "hook result");
    JsonErrors errors;
    const JsonPath root;
    ObjectReader r(doc, root, errors);
    if (!r.valid()) throw Error(Status::config, "hook result: expected a JSON object");

    if (r.has("error")) {
        r.allow_only({"error", "action", "retry_after"});
        RefreshFailure failure;
        if (auto e = r.string("error")) failure.reason = *e;
        if (auto a = r.string("action")) {
            if (*a == "retry") {
                failure.action = FailureAction::retry;
            } else if (*a == "login") {
                failure.action = FailureAction::login;
            } else if (*a == "give_up") {
                failure.action = FailureAction::give_up;
            } else {
                errors.add("action", "expected \"retry\", \"login\" or \"give_up\"");
            }
        }
        if (auto d = r.duration("retry_after", Duration::zero(), std::chrono::hours(24))) {
            failure.retry_after = *d;
        }
        if (!errors.empty()) throw Error(Status::config, "hook result: " + errors.text());
        if (failure.reason.empty()) failure.reason = "the hook reported a failure";
        return failure;
    }

    r.allow_only({"value", "value_base64", "expires_in", "expires_at", "refresh", "refresh_base64",
                  "renewable", "max_lifetime", "metadata"});
    RefreshSuccess success;
    auto read_secret = [&](std::string_view key, bool required) -> std::optional<SecretBytes> {
        std::string b64 = std::string(key) + "_base64";
        const json::value *plain = r.raw(key);
        const json::value *encoded = r.raw(b64);
        if (plain && encoded) {
            errors.add(std::string(key),
                       "give \"" + std::string(key) + "\" or \"" + b64 + "\", not both");
            return std::nullopt;
        }
        std::optional<SecretBytes> out;
        if (plain) {
            if (plain->is_string()) {
                out = SecretBytes(std::string_view(plain->get_string()));
            } else {
                errors.add(std::string(key), "expected a string");
            }
        } else if (encoded) {
            if (encoded->is_string()) out = base64_decode(encoded->get_string());
            if (!out) errors.add(b64, "expected a base64 string");
        } else if (required) {
            errors.add(std::string(key), "is required (or \"" + b64 + "\", or \"error\")");
        }
        if (out && out->size() > kMaxValueSize) {
            errors.add(std::string(key), "is " + std::to_string(out->size()) + " bytes; at most " +
                                             std::to_string(kMaxValueSize) + " are allowed");
            out.reset();
        }
        return out;
    };

    auto value = read_secret("value", true);
    success.refresh = read_secret("refresh", false);
    constexpr double kCentury = 100.0 * 365 * 86400;
    auto in = r.number("expires_in", 0, kCentury, "a number of seconds from 0 up");
    auto at = r.number("expires_at", 0, 1e11, "unix seconds");
    if (in && at) errors.add("expires_in", "give \"expires_in\" or \"expires_at\", not both");
    if (!r.has("expires_in") && !r.has("expires_at")) {
        errors.add("expires_in", "is required (or \"expires_at\")");
    }
    if (in) success.expires_in = seconds_to_duration(*in);
    if (at) success.expires_at = from_unix_seconds(*at);
    if (auto b = r.boolean("renewable")) success.renewable = *b;
    if (auto m = r.duration("max_lifetime", Duration::zero(), std::chrono::hours(24 * 36500))) {
        success.max_lifetime = *m;
    }
    if (const json::value *m = r.raw("metadata")) {
        if (const json::object *o = m->if_object()) {
            for (const auto &item : *o) {
                if (item.value().is_string()) {
                    success.metadata.emplace(std::string(item.key()),
                                             std::string(item.value().get_string()));
                } else {
                    errors.add("metadata." + std::string(item.key()).substr(0, 64),
                               "expected a string");
                }
            }
        } else {
            errors.add("metadata", "expected an object of strings");
        }
    }
    if (!errors.empty()) throw Error(Status::config, "hook result: " + errors.text());
    success.value = std::move(*value);
    return success;
}

void HookProvider::refresh(const RefreshRequest &request, Completion completion) {
    ScrubbedString text;
    write_hook_request(text, request);
    int rc = 0;
    std::string why;
    try {
        rc = function_(text.str(), completion.token());
    } catch (const std::exception &e) {
        rc = -1;
        why = std::string("the hook threw: ") + e.what();
    } catch (...) {
        rc = -1;
        why = "the hook threw an exception";
    }
    if (rc != 0) {
        if (why.empty()) why = "the hook returned " + std::to_string(rc) + " without an answer";
        // A hook that completed and then returned non-zero keeps its answer.
        (void)completion.complete(RefreshFailure{why, FailureAction::retry, std::nullopt});
    }
}

}  // namespace keyturn
