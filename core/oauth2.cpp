#include "core/oauth2.hpp"

#include <boost/json.hpp>

#include <cmath>

#include "core/http_response.hpp"
#include "core/json_support.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

void append_form_encoded(std::string &out, std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
        if (plain) {
            out += ch;
        } else if (c == ' ') {
            out += '+';
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
}

OAuth2Request build_refresh_request(const OAuth2Client &client, const SecretBytes &refresh_token) {
    OAuth2Request r;
    std::string &body = r.body.str();
    // Room for the worst case up front: a string that grew would leave unscrubbed
    // copies of the token behind in freed memory.
    std::size_t secrets = refresh_token.size() + client.client_id.size() + client.scope.size();
    if (client.client_secret) secrets += client.client_secret->size();
    body.reserve(64 + 3 * secrets);
    body += "grant_type=refresh_token&refresh_token=";
    append_form_encoded(body, refresh_token.reveal());
    if (!client.scope.empty()) {
        body += "&scope=";
        append_form_encoded(body, client.scope);
    }
    if (client.auth == OAuth2Client::Auth::body) {
        body += "&client_id=";
        append_form_encoded(body, client.client_id);
        if (client.client_secret) {
            body += "&client_secret=";
            append_form_encoded(body, client.client_secret->reveal());
        }
    } else if (client.client_secret) {
        // RFC 6749 section 2.3.1: both parts are form-encoded before they are joined
        // and base64-encoded.
        ScrubbedString pair;
        pair.str().reserve(3 * (client.client_id.size() + client.client_secret->size()) + 1);
        append_form_encoded(pair.str(), client.client_id);
        pair.str() += ':';
        append_form_encoded(pair.str(), client.client_secret->reveal());
        std::string encoded = base64_encode(pair.str());
        r.authorization.str().reserve(6 + encoded.size());
        r.authorization.str() = "Basic " + encoded;
        cleanse(encoded);
    } else {
        // A public client identifies itself in the body.
        body += "&client_id=";
        append_form_encoded(body, client.client_id);
    }
    return r;
}

namespace {

RefreshFailure error_answer(int status, const json::object *o,
                            std::optional<Duration> retry_after) {
    std::string code;
    std::string description;
    if (o != nullptr) {
        if (const json::value *e = o->if_contains("error"); e && e->is_string()) {
            code = tidy_server_text(e->get_string(), 64);
        }
        if (const json::value *d = o->if_contains("error_description"); d && d->is_string()) {
            description = tidy_server_text(d->get_string());
        }
    }
    RefreshFailure f;
    f.reason = "token endpoint answered HTTP " + std::to_string(status);
    if (!code.empty()) f.reason += " " + code;
    if (!description.empty()) f.reason += " (" + description + ")";
    f.retry_after = retry_after;
    if (code == "invalid_grant") {
        // The refresh token was revoked, expired or already used: retrying the same
        // token cannot succeed, and a reused token may have revoked the whole grant.
        f.reason += ": the refresh token is no longer valid; a new login is needed";
        f.action = FailureAction::give_up;
    } else if (code == "invalid_client" || code == "unauthorized_client" ||
               code == "unsupported_grant_type" || code == "invalid_scope") {
        f.reason += ": the client configuration is wrong";
        f.action = FailureAction::give_up;
    } else if (status == 429 || status >= 500) {
        f.action = FailureAction::retry;
    } else if (status >= 400) {
        f.action = FailureAction::give_up;
    } else {
        f.action = FailureAction::retry;
    }
    return f;
}

}  // namespace

RefreshOutcome interpret_token_response(int status, std::string_view body,
                                        std::optional<Duration> retry_after,
                                        Duration default_lifetime) {
    json::value doc;
    const json::object *o = nullptr;
    std::string parse_error;
    if (!body.empty()) {
        try {
            doc = parse_secret_json(body, "token response");
            o = doc.if_object();
            if (o == nullptr) parse_error = "the token response is not a JSON object";
        } catch (const Error &e) {
            parse_error = e.what();
        }
    } else {
        parse_error = "the token response is empty";
    }

    if (status != 200) return error_answer(status, o, retry_after);
    if (o == nullptr) {
        // A 200 with a body that is not JSON (a proxy's page, a truncated answer) is
        // worth another try.
        return RefreshFailure{parse_error, FailureAction::retry, retry_after};
    }
    if (o->contains("error")) return error_answer(status, o, retry_after);

    auto bad = [&](const std::string &why) {
        return RefreshFailure{"token response: " + why, FailureAction::retry, retry_after};
    };
    const json::value *access = o->if_contains("access_token");
    if (access == nullptr || !access->is_string() || access->get_string().empty()) {
        return bad("\"access_token\" is missing or not a non-empty string");
    }
    if (access->get_string().size() > kMaxValueSize) {
        return bad("\"access_token\" is larger than 1 MiB");
    }
    RefreshSuccess s;
    s.value = SecretBytes(std::string_view(access->get_string()));
    if (const json::value *r = o->if_contains("refresh_token")) {
        if (!r->is_string() || r->get_string().empty()) {
            return bad("\"refresh_token\" is not a non-empty string");
        }
        s.refresh = SecretBytes(std::string_view(r->get_string()));
    }
    if (const json::value *e = o->if_contains("expires_in")) {
        std::optional<double> seconds;
        if (e->is_number()) {
            seconds = e->to_number<double>();
        } else if (e->is_string()) {
            // Some servers send it as a string; RFC 6749 says a number.
            try {
                seconds = std::stod(std::string(e->get_string()));
            } catch (...) {
            }
        }
        // A lifetime of 0 or less is still a lifetime, one that has ended: the provider
        // refuses such a token and keeps the refresh token that came with it.
        if (!seconds || !std::isfinite(*seconds) || std::abs(*seconds) > 100.0 * 365 * 86400) {
            return bad("\"expires_in\" is not a number of seconds");
        }
        s.expires_in = seconds_to_duration(*seconds);
    } else {
        s.expires_in = default_lifetime;
    }
    if (const json::value *t = o->if_contains("token_type"); t && t->is_string()) {
        s.metadata.emplace("token_type", tidy_server_text(t->get_string(), 32));
    }
    if (const json::value *sc = o->if_contains("scope"); sc && sc->is_string()) {
        s.metadata.emplace("scope", tidy_server_text(sc->get_string(), 512));
    }
    return s;
}

}  // namespace keyturn
