#pragma once
// The OAuth2 refresh-token grant (RFC 6749 section 6) as pure functions: the request
// body and headers to send, and what a token endpoint's answer means. The provider
// that sends them over HTTPS lives elsewhere; everything here is tested on strings.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/provider.hpp"
#include "core/secret.hpp"

namespace keyturn {

struct OAuth2Client {
    std::string client_id;
    // Absent for a public client.
    std::optional<SecretBytes> client_secret;
    // How the client authenticates: HTTP Basic (RFC 6749 section 2.3.1, the default)
    // or client_id and client_secret in the body.
    enum class Auth { basic, body };
    Auth auth = Auth::basic;
    // Space-separated scopes to ask for; empty asks for the grant's own.
    std::string scope;
};

struct OAuth2Request {
    // application/x-www-form-urlencoded; holds the refresh token (and maybe the client
    // secret), so it is scrubbed when released.
    ScrubbedString body;
    // The Authorization header's value for Basic authentication, or empty.
    ScrubbedString authorization;
};

// Percent-encodes for application/x-www-form-urlencoded (space as "+").
void append_form_encoded(std::string &out, std::string_view text);

OAuth2Request build_refresh_request(const OAuth2Client &client, const SecretBytes &refresh_token);

// What a token endpoint's answer means for the credential. `status` is the HTTP
// status and `body` the response body; `retry_after` a Retry-After already parsed by
// the HTTP layer. A success needs "access_token"; "expires_in" (seconds) gives the
// expiry, else `default_lifetime` applies; a "refresh_token" replaces the old one,
// its absence keeps it; "token_type" and "scope" are kept as metadata. An error
// answer (RFC 6749 section 5.2) is a failure: invalid_grant means the grant is gone
// and a new login is needed, so it is final (give_up); invalid_client and
// unauthorized_client are final too (configuration); anything else with a 4xx is
// final; 429 and 5xx are retried. Messages name the endpoint's error code and
// description, never a token.
RefreshOutcome interpret_token_response(int status, std::string_view body,
                                        std::optional<Duration> retry_after,
                                        Duration default_lifetime);

}  // namespace keyturn
