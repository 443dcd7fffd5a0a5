#pragma once
// Refresh APIs that speak JSON, configured instead of coded: where the new value,
// the new refresh material and the expiry are found in an answer (JSON Pointers,
// RFC 6901), and a request template that may place the current value or the refresh
// material. Also the token document a console hands out ("authToken",
// "refreshToken", "validUntil"), read as a credential's first value. Pure functions.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/provider.hpp"
#include "core/secret.hpp"
#include "core/snapshot.hpp"

namespace keyturn {

struct JsonResponseMapping {
    std::string value = "/access_token";
    // Where a rotated refresh token is; absent from an answer keeps the old one.
    std::optional<std::string> refresh;
    // Where the expiry is: an absolute time (unix seconds, as a number or numeric
    // string, or RFC 3339 text), or a lifetime in seconds. At most one of the two;
    // with neither, the default lifetime applies.
    std::optional<std::string> expires_at;
    std::optional<std::string> expires_in;
    bool operator==(const JsonResponseMapping &) const = default;
};

// Why `pointer` is not a JSON Pointer, or nothing when it is.
std::optional<std::string> check_json_pointer(std::string_view pointer);

// How a placeholder's bytes are written into a template.
enum class TemplateEncoding {
    json,    // inside a JSON string: escaped as JSON
    form,    // application/x-www-form-urlencoded
    header,  // a header value: as is, but a value with CR, LF or NUL is refused
};

// Replaces {{value}} with the current value and {{refresh}} with the refresh material.
// Throws Error(config) naming the placeholder when one is used but there is nothing
// to put there, when an unknown placeholder appears, or when a header value would
// carry a line break. The result is scrubbed when released.
void render_template(ScrubbedString &out, std::string_view text, TemplateEncoding encoding,
                     const SecretBytes *value, const SecretBytes *refresh);

// True when `text` uses a placeholder; the names are listed in `names` when given.
bool uses_placeholders(std::string_view text, std::vector<std::string> *names = nullptr);

// What an answer means. 200–299 with a JSON object: the value at `mapping.value`
// (a string) is required; retry on anything malformed. 429 and 5xx are retried;
// 400, 401 and 403 are final; `retry_after` comes from the HTTP layer. Messages name
// the pointer that was missing or wrong, never a value.
RefreshOutcome interpret_json_refresh(int status, std::string_view body,
                                      std::optional<Duration> retry_after,
                                      const JsonResponseMapping &mapping, TimePoint now,
                                      Duration default_lifetime);

// Reads a console's token document: {"authToken": "...", "refreshToken": "...",
// "validUntil": 1767225600}. validUntil is unix seconds. Throws Error(config) naming
// the field that is missing or wrong.
Snapshot parse_token_document(std::string_view text, TimePoint now);

// The refresh token in field `field` of the JSON object `text` (a KV secret's fields).
// Throws Error(config) naming the field when it is missing or not a non-empty string.
SecretBytes refresh_token_field(std::string_view text, std::string_view field);

}  // namespace keyturn
