#pragma once
// Reading the connection settings that every HTTP-based provider and store shares:
// "tls": {"ca_file", "client_cert_file", "client_key_file", "insecure_skip_verify"},
// "timeouts": {"connect", "handshake", "request"} and "max_response_bytes".

#include "core/http_client.hpp"
#include "core/json_support.hpp"

namespace keyturn {

// Reads "tls" and "timeouts" from `r` (an object at `path`) into `tls` and `options`,
// and "max_response_bytes" too when `with_body_cap`. Keys left out keep the values
// given; every mistake is recorded in `errors` at its JSON path.
void read_http_options(ObjectReader &r, const JsonPath &path, JsonErrors &errors,
                       HttpTlsOptions &tls, HttpRequestOptions &options, bool with_body_cap);

}  // namespace keyturn
