#include "core/http_options_reader.hpp"

namespace keyturn {

void read_http_options(ObjectReader &r, const JsonPath &path, JsonErrors &errors,
                       HttpTlsOptions &tls, HttpRequestOptions &options, bool with_body_cap) {
    if (const boost::json::value *t = r.raw("tls")) {
        const JsonPath tls_path(path, "tls");
        ObjectReader tr(*t, tls_path, errors);
        tr.allow_only({"ca_file", "client_cert_file", "client_key_file", "insecure_skip_verify"});
        if (auto f = tr.string("ca_file")) tls.ca_file = *f;
        if (auto f = tr.string("client_cert_file")) tls.client_cert_file = *f;
        if (auto f = tr.string("client_key_file")) tls.client_key_file = *f;
        if (auto b = tr.boolean("insecure_skip_verify")) tls.insecure_skip_verify = *b;
        if (tls.client_cert_file.empty() != tls.client_key_file.empty()) {
            errors.add(tls_path, "give both client_cert_file and client_key_file, or neither");
        }
    }
    if (const boost::json::value *t = r.raw("timeouts")) {
        const JsonPath timeouts_path(path, "timeouts");
        ObjectReader tr(*t, timeouts_path, errors);
        tr.allow_only({"connect", "handshake", "request"});
        const Duration lo = std::chrono::milliseconds(1), hi = std::chrono::minutes(10);
        if (auto d = tr.duration("connect", lo, hi)) options.connect_timeout = *d;
        if (auto d = tr.duration("handshake", lo, hi)) options.handshake_timeout = *d;
        if (auto d = tr.duration("request", lo, hi)) options.request_timeout = *d;
    }
    if (with_body_cap) {
        if (auto n = r.integer("max_response_bytes", 1024, 64 << 20)) {
            options.max_body_bytes = static_cast<std::size_t>(*n);
        }
    }
}

}  // namespace keyturn
