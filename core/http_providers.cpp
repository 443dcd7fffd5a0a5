#include "core/http_providers.hpp"

#include "core/status.hpp"
#include "core/store.hpp"

namespace keyturn {

SecretBytes read_secret_file(const std::string &path, std::string_view what) {
    std::optional<ScrubbedString> text = read_private_file(path);
    if (!text) throw Error(Status::not_found, std::string(what) + " " + path + " does not exist");
    std::string &s = text->str();
    if (!s.empty() && s.back() == '\n') s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.empty()) throw Error(Status::config, std::string(what) + " " + path + " is empty");
    return SecretBytes(s);
}

namespace {

// A failure before any answer the protocol can judge. Whatever the server or the
// network did (down, slow, reset, a wrong certificate, an oversized body) may pass and
// is retried with backoff; what this side got wrong (a URL, a CA or key file that
// cannot be loaded) or a redirect from a token endpoint cannot mend itself.
RefreshFailure transport_failure(const HttpResult &r) {
    RefreshFailure f;
    f.reason = r.error;
    const bool local = r.kind == HttpErrorKind::invalid_request ||
                       r.kind == HttpErrorKind::tls_setup || r.kind == HttpErrorKind::redirect;
    f.action = local ? FailureAction::give_up : FailureAction::retry;
    f.retry_after = r.retry_after;
    return f;
}

// The answer carries a status the protocol layer should judge (2xx or an HTTP error
// with a body); anything else is a transport failure.
bool has_answer(const HttpResult &r) {
    return r.kind == HttpErrorKind::none || r.kind == HttpErrorKind::http_status;
}

TimePoint system_now() {
    return TimePoint(
        std::chrono::duration_cast<Duration>(std::chrono::system_clock::now().time_since_epoch()));
}

// A token whose expiry has passed already ("expires_in" 0 or less, or a server whose
// clock is far behind) is not published: the refresh fails, is retried with backoff,
// and the refresh material the answer brought is kept, since the server may have
// rotated the old one away. The engine refuses such a value too, for every provider;
// here the failure also names the endpoint.
void refuse_if_expired(RefreshOutcome &outcome, std::string_view what) {
    auto *s = std::get_if<RefreshSuccess>(&outcome);
    if (s == nullptr) return;
    std::string why;
    if (s->expires_at) {
        const TimePoint now = system_now();
        if (*s->expires_at > now) return;
        const auto ago = std::chrono::round<std::chrono::milliseconds>(now - *s->expires_at);
        why = "the token had expired already, " + format_seconds(ago) + " ago";
    } else if (s->expires_in && *s->expires_in <= Duration::zero()) {
        why = "the token's lifetime is " + format_seconds(*s->expires_in) +
              ": it had expired already";
    } else {
        return;
    }
    RefreshFailure f{std::string(what) + ": " + why, FailureAction::retry, std::nullopt};
    f.refresh = std::move(s->refresh);
    outcome = std::move(f);
}

std::string where(const HttpProviderSpec &spec) {
    std::string error;
    auto url = parse_http_url(spec.url, &error);
    return url ? url->endpoint() : std::string("(invalid URL)");
}

}  // namespace

OAuth2Provider::OAuth2Provider(std::shared_ptr<HttpClient> client, const HttpProviderSpec &spec)
    : http_(std::move(client)), spec_(spec) {
    client_.client_id = spec.client_id;
    client_.auth = spec.auth;
    client_.scope = spec.scope;
    if (!spec.client_secret_file.empty()) {
        client_.client_secret = read_secret_file(spec.client_secret_file, "the client secret file");
    }
}

void OAuth2Provider::refresh(const RefreshRequest &request, Completion completion) {
    if (request.refresh == nullptr) {
        (void)completion.complete(RefreshFailure{
            "no refresh token to use: give the credential a seed (a refresh token file) or log "
            "in again",
            FailureAction::give_up, std::nullopt});
        return;
    }
    OAuth2Request built = build_refresh_request(client_, *request.refresh);
    HttpRequest http;
    http.method = "POST";
    http.url = spec_.url;
    http.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    http.headers.emplace_back("Accept", "application/json");
    if (!built.authorization.str().empty()) {
        http.headers.emplace_back("Authorization", built.authorization.str());
    }
    http.body = std::move(built.body);
    http.tls = spec_.tls;
    http.options = spec_.options;
    const Duration lifetime = spec_.default_lifetime;
    const std::string endpoint = where(spec_);
    http_->send(std::move(http), [completion, lifetime, endpoint](HttpResult result) {
        RefreshOutcome outcome;
        if (has_answer(result)) {
            outcome = interpret_token_response(result.status, result.body.str(), result.retry_after,
                                               lifetime);
            refuse_if_expired(outcome, "token response");
            if (auto *f = std::get_if<RefreshFailure>(&outcome)) {
                f->reason = "POST " + endpoint + ": " + f->reason;
            }
        } else {
            outcome = transport_failure(result);
        }
        (void)completion.complete(std::move(outcome));
    });
}

HttpJsonProvider::HttpJsonProvider(std::shared_ptr<HttpClient> client, const HttpProviderSpec &spec)
    : http_(std::move(client)), spec_(spec) {}

void HttpJsonProvider::refresh(const RefreshRequest &request, Completion completion) {
    const SecretBytes *value = request.current ? &request.current->value : nullptr;
    HttpRequest http;
    http.method = spec_.method;
    http.url = spec_.url;
    try {
        for (const auto &[name, text] : spec_.headers) {
            ScrubbedString rendered;
            render_template(rendered, text, TemplateEncoding::header, value, request.refresh);
            http.headers.emplace_back(name, rendered.str());
        }
        if (!spec_.body.empty()) {
            render_template(http.body, spec_.body, spec_.body_encoding, value, request.refresh);
            http.headers.emplace_back("Content-Type", spec_.body_encoding == TemplateEncoding::form
                                                          ? "application/x-www-form-urlencoded"
                                                          : "application/json");
        }
    } catch (const Error &e) {
        // A placeholder with nothing to put there: no request can succeed until a value
        // or refresh material exists.
        (void)completion.complete(RefreshFailure{
            std::string("cannot build the request: ") + e.what(), FailureAction::give_up, {}});
        return;
    }
    http.headers.emplace_back("Accept", "application/json");
    http.tls = spec_.tls;
    http.options = spec_.options;
    const JsonResponseMapping mapping = spec_.response;
    const Duration lifetime = spec_.default_lifetime;
    const std::string label = spec_.method + " " + where(spec_);
    http_->send(std::move(http), [completion, mapping, lifetime, label](HttpResult result) {
        RefreshOutcome outcome;
        if (has_answer(result)) {
            outcome = interpret_json_refresh(result.status, result.body.str(), result.retry_after,
                                             mapping, system_now(), lifetime);
            refuse_if_expired(outcome, "refresh response");
            if (auto *f = std::get_if<RefreshFailure>(&outcome)) {
                f->reason = label + ": " + f->reason;
            }
        } else {
            outcome = transport_failure(result);
        }
        (void)completion.complete(std::move(outcome));
    });
}

}  // namespace keyturn
