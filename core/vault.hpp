#pragma once
// Vault's HTTP API as pure functions: the requests keyturn sends (token renewal,
// AppRole login, reading a leased secret, renewing and revoking leases) and what
// Vault's answers mean. Nothing here does I/O; the providers that send these requests
// live in vault_providers.hpp, and every rule here is tested on byte strings.
//
// Names start with `vault_` (or `Vault`) so that other Vault clients in keyturn, such
// as a KV store, can share the request and error helpers without confusion.
//
// Messages built here hold the HTTP status and Vault's own `errors` text, tidied: never
// a token, a secret id, a lease id or a secret's data.

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/http_client.hpp"
#include "core/http_response.hpp"
#include "core/secret.hpp"

namespace keyturn {

// Where a Vault server is and how to talk to it.
struct VaultEndpoint {
    // The server's base URL, such as https://vault.example.com:8200 (no /v1).
    std::string address;
    // Sent as X-Vault-Namespace when not empty (Vault Enterprise namespaces).
    std::string vault_namespace;
    HttpTlsOptions tls;
    HttpRequestOptions options;

    bool operator==(const VaultEndpoint &) const = default;
};

// The URL of an API path: the address without its trailing slashes, then "/v1/", then
// the path without its leading slashes.
std::string vault_api_url(std::string_view address, std::string_view path);

// A request to Vault's API. Headers: X-Vault-Request: true always (Vault's clients
// send it, and it is Vault's guard against requests forged from a browser),
// X-Vault-Token when `token` is given, X-Vault-Namespace when the endpoint names one,
// and Content-Type: application/json with a body.
HttpRequest build_vault_request(const VaultEndpoint &endpoint, std::string_view method,
                                std::string_view path, const SecretBytes *token,
                                ScrubbedString body = {});

// Bodies. Durations travel as whole seconds, rounded up.
ScrubbedString vault_renew_self_body(std::optional<Duration> increment);
ScrubbedString vault_approle_login_body(const SecretBytes &role_id, const SecretBytes &secret_id);
ScrubbedString vault_lease_renew_body(const SecretBytes &lease_id,
                                      std::optional<Duration> increment);
ScrubbedString vault_lease_revoke_body(const SecretBytes &lease_id);

// The text of Vault's `{"errors": [...]}` body: the messages joined with "; ", each
// freed of control characters and quotes and cut to a readable length. Empty when the
// body holds no such list.
std::string vault_errors_text(std::string_view body);

// Why a Vault call did not give what was asked.
struct VaultFailure {
    enum class Kind {
        // Worth trying again later: 429, 408, 5xx, a timeout, a reset, a malformed
        // answer.
        transient,
        // Vault said no to this token or lease: 400, 401, 403, 404 and other 4xx, or
        // "past the max TTL". Trying the same request again cannot help; the caller
        // logs in again, reads the secret anew, or gives up.
        refused,
        // Something on this side is wrong (a URL, a CA file) or a redirect was refused:
        // nothing mends itself.
        local,
    };
    Kind kind = Kind::transient;
    // "HTTP 403: permission denied", "the answer has no \"auth\" object", ...
    std::string reason;
    std::optional<Duration> retry_after;
    int status = 0;
};

// The failure for an HTTP exchange that brought no answer to judge (anything but a
// 2xx or another status with a complete body). Its reason is the client's error, which
// names the method, the endpoint and the cause.
VaultFailure vault_transport_failure(const HttpResult &result);

// The failure for a status outside 2xx; Vault's errors are part of the reason.
VaultFailure vault_status_failure(int status, std::string_view body,
                                  std::optional<Duration> retry_after);

// auth/token/lookup-self: what is known about a token.
struct VaultTokenInfo {
    // Time left; zero for a token that never expires (a root token, for one).
    Duration ttl{};
    // The TTL the token was made with, the natural renewal increment.
    Duration creation_ttl{};
    bool renewable = false;
};

// auth/token/renew-self and auth/<approle mount>/login: the `auth` block.
struct VaultAuth {
    SecretBytes client_token;
    Duration lease_duration{};
    bool renewable = false;
    // True when Vault warned that the TTL was capped at the token's max TTL.
    bool capped_warning = false;
};

// A secret read from a secret engine that leases it (database/creds/<role>, ...).
struct VaultSecret {
    // Empty for a secret without a lease (a KV read): it is not renewed, only read.
    SecretBytes lease_id;
    Duration lease_duration{};
    bool renewable = false;
    // The `data` object as JSON text, in the order Vault sent its members.
    ScrubbedString data;
};

// sys/leases/renew.
struct VaultLeaseRenewal {
    Duration lease_duration{};
    bool renewable = false;
    bool capped_warning = false;
};

template <class T>
using VaultOutcome = std::variant<T, VaultFailure>;

// Each reads one answer: `status` and `body` as received, `retry_after` as the HTTP
// layer parsed it. A 2xx whose body lacks what the call promises is transient (a proxy
// or a truncated answer may pass).
VaultOutcome<VaultTokenInfo> interpret_vault_lookup(int status, std::string_view body,
                                                    std::optional<Duration> retry_after);
VaultOutcome<VaultAuth> interpret_vault_auth(int status, std::string_view body,
                                             std::optional<Duration> retry_after);
VaultOutcome<VaultSecret> interpret_vault_secret(int status, std::string_view body,
                                                 std::optional<Duration> retry_after);
VaultOutcome<VaultLeaseRenewal> interpret_vault_lease_renewal(int status, std::string_view body,
                                                              std::optional<Duration> retry_after);

// True when a renewal gave less time than asked, so that further renewals cannot go
// on: the token or lease has met its max TTL. Vault grants exactly what is asked (in
// whole seconds, as sent) unless a max caps it, and then says so in a warning.
bool vault_renewal_capped(Duration asked, Duration granted, bool capped_warning);

}  // namespace keyturn
