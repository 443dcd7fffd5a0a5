#include "core/vault.hpp"

#include <boost/json.hpp>

#include <cmath>

#include "core/http_response.hpp"
#include "core/json_support.hpp"
#include "core/spec.hpp"

namespace keyturn {

namespace json = boost::json;

namespace {

// Whole seconds, rounded up: Vault reads an increment as seconds.
std::int64_t whole_seconds(Duration d) {
    return static_cast<std::int64_t>(std::ceil(to_seconds(d) - 1e-9));
}

// A JSON body built in scrubbing storage and serialized into a ScrubbedString.
class SecretBody {
  public:
    SecretBody() : object_(scrubbing_storage()) {}
    void secret(std::string_view key, const SecretBytes &value) {
        object_[key] = json::string(value.reveal(), scrubbing_storage());
    }
    void seconds(std::string_view key, Duration d) { object_[key] = whole_seconds(d); }
    ScrubbedString text() const {
        ScrubbedString out;
        serialize_into(out, object_);
        return out;
    }

  private:
    json::object object_;
};

// Parses a body that may hold tokens; nothing (with the reason) when it is not an
// object.
std::optional<json::value> parse_body(std::string_view body, std::string &error) {
    HttpJsonBody parsed = parse_json_object_body(body);
    if (!parsed.object) {
        error = parsed.error;
        return std::nullopt;
    }
    return json::value(std::move(*parsed.object));
}

VaultFailure malformed(std::string why, std::optional<Duration> retry_after) {
    VaultFailure f;
    f.kind = VaultFailure::Kind::transient;
    f.reason = "unexpected answer: " + std::move(why);
    f.retry_after = retry_after;
    return f;
}

// A non-negative number of seconds, or nothing.
std::optional<Duration> seconds_of(const json::value *v) {
    if (v == nullptr || !v->is_number()) return std::nullopt;
    const double s = v->to_number<double>();
    if (!(s >= 0) || s > 100.0 * 365 * 86400) return std::nullopt;
    return seconds_to_duration(s);
}

bool bool_of(const json::value *v) {
    return v != nullptr && v->is_bool() && v->get_bool();
}

// True when Vault's warnings say a TTL was capped ("... TTL value is capped
// accordingly").
bool warns_capped(const json::object &o) {
    const json::value *w = o.if_contains("warnings");
    if (w == nullptr || !w->is_array()) return false;
    for (const json::value &item : w->get_array()) {
        if (item.is_string() &&
            std::string_view(item.get_string()).find("capped") != std::string_view::npos) {
            return true;
        }
    }
    return false;
}

// The answer's object when the status is 2xx and the body an object; otherwise the
// failure to return.
std::variant<json::value, VaultFailure> answer_object(int status, std::string_view body,
                                                      std::optional<Duration> retry_after) {
    if (status < 200 || status >= 300) return vault_status_failure(status, body, retry_after);
    std::string error;
    auto doc = parse_body(body, error);
    if (!doc) return malformed(error, retry_after);
    return std::move(*doc);
}

}  // namespace

std::string vault_api_url(std::string_view address, std::string_view path) {
    while (!address.empty() && address.back() == '/')
        address.remove_suffix(1);
    while (!path.empty() && path.front() == '/')
        path.remove_prefix(1);
    std::string url(address);
    url += "/v1/";
    url += path;
    return url;
}

HttpRequest build_vault_request(const VaultEndpoint &endpoint, std::string_view method,
                                std::string_view path, const SecretBytes *token,
                                ScrubbedString body) {
    HttpRequest r;
    r.method = std::string(method);
    r.url = vault_api_url(endpoint.address, path);
    r.headers.emplace_back("X-Vault-Request", "true");
    if (token != nullptr) r.headers.emplace_back("X-Vault-Token", std::string(token->reveal()));
    if (!endpoint.vault_namespace.empty()) {
        r.headers.emplace_back("X-Vault-Namespace", endpoint.vault_namespace);
    }
    r.headers.emplace_back("Accept", "application/json");
    if (!body.str().empty()) r.headers.emplace_back("Content-Type", "application/json");
    r.body = std::move(body);
    r.tls = endpoint.tls;
    r.options = endpoint.options;
    return r;
}

ScrubbedString vault_renew_self_body(std::optional<Duration> increment) {
    SecretBody b;
    if (increment) b.seconds("increment", *increment);
    return b.text();
}

ScrubbedString vault_approle_login_body(const SecretBytes &role_id, const SecretBytes &secret_id) {
    SecretBody b;
    b.secret("role_id", role_id);
    b.secret("secret_id", secret_id);
    return b.text();
}

ScrubbedString vault_lease_renew_body(const SecretBytes &lease_id,
                                      std::optional<Duration> increment) {
    SecretBody b;
    b.secret("lease_id", lease_id);
    if (increment) b.seconds("increment", *increment);
    return b.text();
}

ScrubbedString vault_lease_revoke_body(const SecretBytes &lease_id) {
    SecretBody b;
    b.secret("lease_id", lease_id);
    return b.text();
}

std::string vault_errors_text(std::string_view body) {
    HttpJsonBody parsed = parse_json_object_body(body);
    if (!parsed.object) return {};
    const json::value *errors = parsed.object->if_contains("errors");
    if (errors == nullptr || !errors->is_array()) return {};
    std::string out;
    std::size_t shown = 0;
    for (const json::value &e : errors->get_array()) {
        if (!e.is_string() || e.get_string().empty()) continue;
        if (shown == 4) {
            out += "; ...";
            break;
        }
        if (!out.empty()) out += "; ";
        out += tidy_server_text(e.get_string());
        ++shown;
    }
    return out;
}

VaultFailure vault_transport_failure(const HttpResult &result) {
    VaultFailure f;
    f.reason = result.error;
    f.retry_after = result.retry_after;
    f.status = result.status;
    const bool local = result.kind == HttpErrorKind::invalid_request ||
                       result.kind == HttpErrorKind::tls_setup ||
                       result.kind == HttpErrorKind::redirect;
    f.kind = local ? VaultFailure::Kind::local : VaultFailure::Kind::transient;
    return f;
}

VaultFailure vault_status_failure(int status, std::string_view body,
                                  std::optional<Duration> retry_after) {
    VaultFailure f;
    f.status = status;
    f.retry_after = retry_after;
    f.reason = "HTTP " + std::to_string(status);
    const std::string errors = vault_errors_text(body);
    if (!errors.empty()) f.reason += ": " + errors;
    if (errors.find("past the max TTL") != std::string::npos) {
        // Vault answers 500 when a renewal comes after the max TTL: it will never pass.
        f.kind = VaultFailure::Kind::refused;
    } else if (status == 408 || status == 429 || status >= 500) {
        f.kind = VaultFailure::Kind::transient;
    } else if (status >= 300 && status < 400) {
        f.kind = VaultFailure::Kind::local;
        f.reason += ": redirect refused";
    } else {
        f.kind = VaultFailure::Kind::refused;
    }
    return f;
}

VaultOutcome<VaultTokenInfo> interpret_vault_lookup(int status, std::string_view body,
                                                    std::optional<Duration> retry_after) {
    auto answer = answer_object(status, body, retry_after);
    if (auto *f = std::get_if<VaultFailure>(&answer)) return std::move(*f);
    const json::object &o = std::get<json::value>(answer).get_object();
    const json::value *data = o.if_contains("data");
    if (data == nullptr || !data->is_object()) {
        return malformed("the answer has no \"data\" object", retry_after);
    }
    const json::object &d = data->get_object();
    VaultTokenInfo info;
    auto ttl = seconds_of(d.if_contains("ttl"));
    if (!ttl) return malformed("\"data.ttl\" is not a number of seconds", retry_after);
    info.ttl = *ttl;
    info.creation_ttl = seconds_of(d.if_contains("creation_ttl")).value_or(info.ttl);
    info.renewable = bool_of(d.if_contains("renewable"));
    return info;
}

VaultOutcome<VaultAuth> interpret_vault_auth(int status, std::string_view body,
                                             std::optional<Duration> retry_after) {
    auto answer = answer_object(status, body, retry_after);
    if (auto *f = std::get_if<VaultFailure>(&answer)) return std::move(*f);
    const json::object &o = std::get<json::value>(answer).get_object();
    const json::value *auth = o.if_contains("auth");
    if (auth == nullptr || !auth->is_object()) {
        return malformed("the answer has no \"auth\" object", retry_after);
    }
    const json::object &a = auth->get_object();
    const json::value *token = a.if_contains("client_token");
    if (token == nullptr || !token->is_string() || token->get_string().empty()) {
        return malformed("\"auth.client_token\" is missing or not a non-empty string", retry_after);
    }
    if (token->get_string().size() > kMaxValueSize) {
        return malformed("\"auth.client_token\" is larger than 1 MiB", retry_after);
    }
    auto lease = seconds_of(a.if_contains("lease_duration"));
    if (!lease) {
        return malformed("\"auth.lease_duration\" is not a number of seconds", retry_after);
    }
    VaultAuth out;
    out.client_token = SecretBytes(std::string_view(token->get_string()));
    out.lease_duration = *lease;
    out.renewable = bool_of(a.if_contains("renewable"));
    out.capped_warning = warns_capped(o);
    return out;
}

VaultOutcome<VaultSecret> interpret_vault_secret(int status, std::string_view body,
                                                 std::optional<Duration> retry_after) {
    auto answer = answer_object(status, body, retry_after);
    if (auto *f = std::get_if<VaultFailure>(&answer)) return std::move(*f);
    const json::object &o = std::get<json::value>(answer).get_object();
    const json::value *data = o.if_contains("data");
    if (data == nullptr || !data->is_object()) {
        return malformed("the answer has no \"data\" object", retry_after);
    }
    VaultSecret out;
    serialize_into(out.data, *data);
    if (out.data.str().size() > kMaxValueSize) {
        return malformed("\"data\" is larger than 1 MiB", retry_after);
    }
    if (const json::value *id = o.if_contains("lease_id")) {
        if (!id->is_string()) return malformed("\"lease_id\" is not a string", retry_after);
        out.lease_id = SecretBytes(std::string_view(id->get_string()));
    }
    auto lease = seconds_of(o.if_contains("lease_duration"));
    if (!lease) return malformed("\"lease_duration\" is not a number of seconds", retry_after);
    out.lease_duration = *lease;
    out.renewable = bool_of(o.if_contains("renewable")) && !out.lease_id.empty();
    return out;
}

VaultOutcome<VaultLeaseRenewal> interpret_vault_lease_renewal(int status, std::string_view body,
                                                              std::optional<Duration> retry_after) {
    auto answer = answer_object(status, body, retry_after);
    if (auto *f = std::get_if<VaultFailure>(&answer)) return std::move(*f);
    const json::object &o = std::get<json::value>(answer).get_object();
    auto lease = seconds_of(o.if_contains("lease_duration"));
    if (!lease) return malformed("\"lease_duration\" is not a number of seconds", retry_after);
    VaultLeaseRenewal out;
    out.lease_duration = *lease;
    out.renewable = bool_of(o.if_contains("renewable"));
    out.capped_warning = warns_capped(o);
    return out;
}

bool vault_renewal_capped(Duration asked, Duration granted, bool capped_warning) {
    return capped_warning || granted < std::chrono::seconds(whole_seconds(asked));
}

}  // namespace keyturn
