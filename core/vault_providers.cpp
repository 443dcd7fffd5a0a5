#include "core/vault_providers.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "core/http_options_reader.hpp"
#include "core/http_providers.hpp"
#include "core/json_support.hpp"
#include "core/spec.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace asio = boost::asio;

namespace {

// The metadata key that remembers the TTL a token or lease was first given: the
// renewal asked for when no increment is configured. "0" marks a token that never
// expires.
constexpr std::string_view kTtlKey = "vault_ttl";

// How long a value without an expiry (a token with no TTL, a secret without a lease)
// is published for before it is looked up or read again.
constexpr Duration kRecheck = std::chrono::hours(1);

std::string seconds_text(Duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

std::optional<Duration> ttl_of(const Metadata &metadata) {
    auto it = metadata.find(kTtlKey);
    if (it == metadata.end()) return std::nullopt;
    try {
        return std::chrono::seconds(std::stoll(it->second));
    } catch (...) {
        return std::nullopt;
    }
}

// "GET https://vault:8200/v1/auth/token/lookup-self", for messages.
std::string label_of(const HttpRequest &r) {
    std::string error;
    auto url = parse_http_url(r.url, &error);
    return r.method + " " + (url ? url->endpoint() : std::string("(invalid URL)"));
}

RefreshFailure to_refresh_failure(const VaultFailure &f, std::string reason) {
    RefreshFailure out;
    out.reason = std::move(reason);
    out.retry_after = f.retry_after;
    out.action =
        f.kind == VaultFailure::Kind::transient ? FailureAction::retry : FailureAction::give_up;
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------
// The shared state

class VaultProvider::Core : public std::enable_shared_from_this<VaultProvider::Core> {
  public:
    Core(std::shared_ptr<HttpClient> http, asio::io_context &io, VaultProviderSpec spec,
         VaultLogFunction log)
        : http(std::move(http)), io(io), spec(std::move(spec)), log_(std::move(log)) {}

    std::shared_ptr<HttpClient> http;
    asio::io_context &io;
    const VaultProviderSpec spec;

    void log(LogLevel level, std::string line) const {
        if (!log_) return;
        try {
            log_(level, std::move(line));
        } catch (...) {
        }
    }

    // Sends a request; `done` receives the result and the request's label.
    void send(HttpRequest request,
              std::function<void(HttpResult result, const std::string &label)> done) {
        std::string label = label_of(request);
        http->send(std::move(request), [done = std::move(done), label = std::move(label)](
                                           HttpResult result) { done(std::move(result), label); });
    }

    SecretBytes read_token() const { return read_secret_file(spec.token_file, "the token file"); }

    // Superseded leases (or tokens) waiting for their grace period to end.
    struct Pending {
        std::string credential;
        SecretBytes item;
        // Its grace timer: a timer left waiting would keep the io threads from ending.
        std::shared_ptr<asio::steady_timer> timer;
    };

    void supersede(std::string credential, SecretBytes item) {
        if (!spec.revoke_superseded_after || item.empty()) return;
        auto timer = std::make_shared<asio::steady_timer>(io, *spec.revoke_superseded_after);
        std::uint64_t id;
        {
            std::lock_guard lock(mutex_);
            id = next_pending_++;
            pending_.emplace(id, Pending{std::move(credential), std::move(item), timer});
        }
        timer->async_wait([weak = weak_from_this(), timer, id](const boost::system::error_code &) {
            auto self = weak.lock();
            if (!self) return;
            std::optional<Pending> p = self->take_pending(id);
            if (p) self->revoke(p->credential, "superseded", std::move(p->item), {}, [] {});
        });
    }

    std::optional<Pending> take_pending(std::uint64_t id) {
        std::lock_guard lock(mutex_);
        auto it = pending_.find(id);
        if (it == pending_.end()) return std::nullopt;
        Pending p = std::move(it->second);
        pending_.erase(it);
        return p;
    }

    std::vector<Pending> take_all_pending() {
        std::lock_guard lock(mutex_);
        std::vector<Pending> all;
        for (auto &[id, p] : pending_) {
            // Cancelled on an io thread, where the timer's handler runs.
            asio::post(io, [timer = p.timer] { timer->cancel(); });
            all.push_back(std::move(p));
        }
        pending_.clear();
        return all;
    }

    bool has_pending() const {
        std::lock_guard lock(mutex_);
        return !pending_.empty();
    }

    // Revokes a token (revoke-self, authenticated by that token) or a lease (with the
    // token file's token). `what` says which one for the log ("superseded", "removed",
    // "stopping"). `deadline`, when set, bounds the request.
    void revoke(const std::string &credential, std::string_view why, SecretBytes item,
                std::optional<std::chrono::steady_clock::time_point> deadline,
                std::function<void()> done) {
        const bool token = spec.kind == VaultProviderSpec::Kind::token;
        const char *noun = token ? "token" : "lease";
        HttpRequest request;
        try {
            if (token) {
                request =
                    build_vault_request(spec.endpoint, "POST", "auth/token/revoke-self", &item);
            } else {
                const SecretBytes vault_token = read_token();
                request = build_vault_request(spec.endpoint, "PUT", "sys/leases/revoke",
                                              &vault_token, vault_lease_revoke_body(item));
            }
        } catch (const std::exception &e) {
            log(LogLevel::warning, "credential \"" + credential + "\": cannot revoke the " +
                                       std::string(why) + " " + noun + ": " + e.what());
            done();
            return;
        }
        if (deadline) {
            const auto left =
                std::chrono::duration_cast<Duration>(*deadline - std::chrono::steady_clock::now());
            const Duration floor = std::chrono::milliseconds(50);
            request.options.request_timeout =
                std::max(floor, std::min(request.options.request_timeout, left));
            request.options.connect_timeout =
                std::min(request.options.connect_timeout, request.options.request_timeout);
            request.options.handshake_timeout =
                std::min(request.options.handshake_timeout, request.options.request_timeout);
        }
        std::string prefix = "credential \"" + credential + "\": ";
        std::string what = std::string(why) + " " + noun;
        send(std::move(request), [self = shared_from_this(), prefix, what, done](
                                     HttpResult result, const std::string &label) {
            if (result.kind == HttpErrorKind::none) {
                self->log(LogLevel::info, prefix + "revoked the " + what + " (" + label + ")");
            } else if (result.kind == HttpErrorKind::http_status) {
                VaultFailure f = vault_status_failure(result.status, result.body.str(), {});
                self->log(LogLevel::warning,
                          prefix + "could not revoke the " + what + ": " + label + ": " + f.reason);
            } else {
                self->log(LogLevel::warning,
                          prefix + "could not revoke the " + what + ": " + result.error);
            }
            done();
        });
    }

  private:
    VaultLogFunction log_;
    mutable std::mutex mutex_;
    std::uint64_t next_pending_ = 0;
    std::map<std::uint64_t, Pending> pending_;
};

// ---------------------------------------------------------------------------------
// One refresh: a short chain of requests that ends in exactly one completion.

namespace {

using Core = VaultProvider::Core;

class Flow : public std::enable_shared_from_this<Flow> {
  public:
    Flow(std::shared_ptr<Core> core, const RefreshRequest &request, Completion completion)
        : core_(std::move(core)),
          spec_(core_->spec),
          completion_(completion),
          credential_(request.credential) {
        if (request.current != nullptr) {
            current_ = request.current->value;
            renewable_ = request.current->renewable;
            metadata_ = request.current->metadata;
        }
        if (request.refresh != nullptr) lease_id_ = *request.refresh;
    }

    void start() {
        if (spec_.kind == VaultProviderSpec::Kind::token) {
            start_token();
        } else {
            start_lease();
        }
    }

  private:
    // --- vault_token ----------------------------------------------------------

    void start_token() {
        if (!current_) {
            if (spec_.token_file.empty()) return login("no token yet");
            SecretBytes token;
            try {
                token = core_->read_token();
            } catch (const std::exception &e) {
                if (spec_.has_approle()) return login(e.what());
                return give_up(std::string("cannot read the first token: ") + e.what());
            }
            return lookup(std::move(token));
        }
        if (ttl_of(metadata_) == Duration::zero()) return lookup(*current_);
        if (!renewable_) {
            // The token is still valid until it expires: once a login replaces it, it
            // may be revoked after the grace period.
            old_token_alive_ = true;
            return login_or_give_up(
                "the token cannot be renewed any further (its max TTL is reached, or it is not "
                "renewable)");
        }
        renew_token();
    }

    void lookup(SecretBytes token) {
        HttpRequest request =
            build_vault_request(spec_.endpoint, "GET", "auth/token/lookup-self", &token);
        core_->send(std::move(request), [self = shared_from_this(), token = std::move(token)](
                                            HttpResult result, const std::string &label) {
            auto outcome = self->judge(result, label, interpret_vault_lookup);
            if (auto *f = std::get_if<Failed>(&outcome)) {
                if (f->failure.kind == VaultFailure::Kind::refused) {
                    return self->login_or_give_up(f->reason + "; the token is not valid");
                }
                return self->fail(*f);
            }
            const VaultTokenInfo &info = std::get<VaultTokenInfo>(outcome);
            RefreshSuccess s;
            s.value = token;
            if (info.ttl == Duration::zero()) {
                s.expires_in = kRecheck;
                s.metadata.emplace(kTtlKey, "0");
            } else {
                s.expires_in = info.ttl;
                s.renewable = info.renewable;
                s.metadata.emplace(kTtlKey, seconds_text(info.creation_ttl));
            }
            self->succeed(std::move(s));
        });
    }

    std::optional<Duration> asked() const {
        if (spec_.increment) return spec_.increment;
        auto ttl = ttl_of(metadata_);
        if (ttl && *ttl > Duration::zero()) return ttl;
        return std::nullopt;
    }

    void renew_token() {
        const std::optional<Duration> increment = asked();
        HttpRequest request = build_vault_request(spec_.endpoint, "POST", "auth/token/renew-self",
                                                  &*current_, vault_renew_self_body(increment));
        core_->send(std::move(request), [self = shared_from_this(), increment](
                                            HttpResult result, const std::string &label) {
            auto outcome = self->judge(result, label, interpret_vault_auth);
            if (auto *f = std::get_if<Failed>(&outcome)) {
                if (f->failure.kind == VaultFailure::Kind::refused) {
                    return self->login_or_give_up("renewal refused: " + f->reason);
                }
                return self->fail(*f);
            }
            VaultAuth &auth = std::get<VaultAuth>(outcome);
            if (auth.lease_duration == Duration::zero()) {
                return self->login_or_give_up(
                    label + ": the renewal granted no time: the max TTL is reached");
            }
            const bool capped = increment ? vault_renewal_capped(*increment, auth.lease_duration,
                                                                 auth.capped_warning)
                                          : auth.capped_warning;
            RefreshSuccess s;
            s.value = std::move(auth.client_token);
            s.expires_in = auth.lease_duration;
            s.renewable = auth.renewable && !capped;
            s.metadata = self->metadata_;
            if (capped) {
                self->core_->log(
                    LogLevel::info,
                    "credential \"" + self->credential_ +
                        "\": the Vault token reached its max TTL (renewed for " +
                        format_seconds(auth.lease_duration) + " only); " +
                        (self->spec_.has_approle() ? "the next refresh logs in with AppRole"
                                                   : "no approle is configured to log in again"));
            }
            self->succeed(std::move(s));
        });
    }

    void login_or_give_up(const std::string &why) {
        if (spec_.has_approle()) return login(why);
        give_up(why + "; no approle is configured to log in again");
    }

    void login(const std::string &why) {
        if (!spec_.has_approle()) return give_up(why);
        if (current_) {
            core_->log(LogLevel::info,
                       "credential \"" + credential_ + "\": logging in with AppRole: " + why);
        }
        ScrubbedString body;
        try {
            const SecretBytes role_id = read_secret_file(spec_.role_id_file, "the role id file");
            const SecretBytes secret_id =
                read_secret_file(spec_.secret_id_file, "the secret id file");
            body = vault_approle_login_body(role_id, secret_id);
        } catch (const std::exception &e) {
            return give_up(std::string("cannot log in with AppRole: ") + e.what());
        }
        HttpRequest request =
            build_vault_request(spec_.endpoint, "POST", "auth/" + spec_.approle_mount + "/login",
                                nullptr, std::move(body));
        core_->send(std::move(request),
                    [self = shared_from_this()](HttpResult result, const std::string &label) {
                        auto outcome = self->judge(result, label, interpret_vault_auth);
                        if (auto *f = std::get_if<Failed>(&outcome)) {
                            if (f->failure.kind == VaultFailure::Kind::refused) {
                                return self->give_up("AppRole login refused: " + f->reason);
                            }
                            return self->fail(*f);
                        }
                        VaultAuth &auth = std::get<VaultAuth>(outcome);
                        RefreshSuccess s;
                        s.value = std::move(auth.client_token);
                        if (auth.lease_duration == Duration::zero()) {
                            s.expires_in = kRecheck;
                            s.metadata.emplace(kTtlKey, "0");
                        } else {
                            s.expires_in = auth.lease_duration;
                            s.renewable = auth.renewable && !auth.capped_warning;
                            s.metadata.emplace(kTtlKey, seconds_text(auth.lease_duration));
                        }
                        if (self->old_token_alive_ && !(*self->current_ == s.value)) {
                            self->core_->supersede(self->credential_, *self->current_);
                        }
                        SecretBytes token = s.value;
                        self->succeed_new(std::move(s), std::move(token));
                    });
    }

    // --- vault_lease ----------------------------------------------------------

    void start_lease() {
        try {
            vault_token_ = core_->read_token();
        } catch (const std::exception &e) {
            return give_up(std::string("cannot read the Vault token: ") + e.what());
        }
        if (!current_ || lease_id_.empty()) return read_secret();
        if (!renewable_) return read_secret();
        renew_lease();
    }

    void read_secret() {
        HttpRequest request = build_vault_request(spec_.endpoint, "GET", spec_.path, &vault_token_);
        core_->send(std::move(request), [self = shared_from_this()](HttpResult result,
                                                                    const std::string &label) {
            auto outcome = self->judge(result, label, interpret_vault_secret);
            if (auto *f = std::get_if<Failed>(&outcome)) {
                if (f->failure.kind == VaultFailure::Kind::refused) {
                    return self->give_up("reading the secret was refused: " + f->reason);
                }
                return self->fail(*f);
            }
            VaultSecret &secret = std::get<VaultSecret>(outcome);
            RefreshSuccess s;
            s.value = SecretBytes(secret.data.str());
            s.refresh = secret.lease_id;
            if (secret.lease_duration == Duration::zero()) {
                s.expires_in = kRecheck;
            } else {
                s.expires_in = secret.lease_duration;
                s.renewable = secret.renewable;
                s.metadata.emplace(kTtlKey, seconds_text(secret.lease_duration));
            }
            if (!self->lease_id_.empty() && !(self->lease_id_ == secret.lease_id)) {
                self->core_->supersede(self->credential_, self->lease_id_);
            }
            self->succeed_new(std::move(s), std::move(secret.lease_id));
        });
    }

    void renew_lease() {
        const std::optional<Duration> increment = asked();
        HttpRequest request =
            build_vault_request(spec_.endpoint, "PUT", "sys/leases/renew", &vault_token_,
                                vault_lease_renew_body(lease_id_, increment));
        core_->send(std::move(request), [self = shared_from_this(), increment](
                                            HttpResult result, const std::string &label) {
            auto outcome = self->judge(result, label, interpret_vault_lease_renewal);
            if (auto *f = std::get_if<Failed>(&outcome)) {
                if (f->failure.kind == VaultFailure::Kind::refused) {
                    self->core_->log(LogLevel::info, "credential \"" + self->credential_ +
                                                         "\": lease renewal refused (" + f->reason +
                                                         "); reading the secret anew");
                    return self->read_secret();
                }
                return self->fail(*f);
            }
            const VaultLeaseRenewal &renewal = std::get<VaultLeaseRenewal>(outcome);
            if (renewal.lease_duration == Duration::zero()) {
                self->core_->log(LogLevel::info, "credential \"" + self->credential_ +
                                                     "\": the Vault lease reached its max TTL; "
                                                     "reading the secret anew");
                return self->read_secret();
            }
            const bool capped = increment ? vault_renewal_capped(*increment, renewal.lease_duration,
                                                                 renewal.capped_warning)
                                          : renewal.capped_warning;
            RefreshSuccess s;
            s.value = *self->current_;
            s.refresh = self->lease_id_;
            s.expires_in = renewal.lease_duration;
            s.renewable = renewal.renewable && !capped;
            s.metadata = self->metadata_;
            if (capped) {
                self->core_->log(LogLevel::info,
                                 "credential \"" + self->credential_ +
                                     "\": the Vault lease reached its max TTL (renewed for " +
                                     format_seconds(renewal.lease_duration) +
                                     " only); the next refresh reads the secret anew");
            }
            self->succeed(std::move(s));
        });
    }

    // --- answers --------------------------------------------------------------

    struct Failed {
        VaultFailure failure;
        // The endpoint and the cause: "PUT https://v:8200/v1/sys/leases/renew: HTTP 503:
        // Vault is sealed".
        std::string reason;
    };

    template <class Interpret>
    auto judge(const HttpResult &result, const std::string &label, Interpret interpret)
        -> std::variant<
            std::variant_alternative_t<0, decltype(interpret(0, std::string_view(), std::nullopt))>,
            Failed> {
        if (result.kind != HttpErrorKind::none && result.kind != HttpErrorKind::http_status) {
            VaultFailure f = vault_transport_failure(result);
            std::string reason = f.reason;
            return Failed{std::move(f), std::move(reason)};
        }
        auto outcome = interpret(result.status, result.body.str(), result.retry_after);
        if (auto *f = std::get_if<VaultFailure>(&outcome)) {
            std::string reason = label + ": " + f->reason;
            return Failed{std::move(*f), std::move(reason)};
        }
        return std::move(std::get<0>(outcome));
    }

    void fail(const Failed &f) { finish(to_refresh_failure(f.failure, f.reason)); }

    void give_up(std::string reason) {
        finish(RefreshFailure{std::move(reason), FailureAction::give_up, std::nullopt});
    }

    void succeed(RefreshSuccess s) { finish(std::move(s)); }

    // Completes with a token or lease that this refresh obtained. When the engine no
    // longer takes it (the credential was removed while the request ran, or the flight
    // had timed out), nobody will ever use it: with revocation configured, it is revoked
    // now rather than left alive until its TTL ends.
    void succeed_new(RefreshSuccess s, SecretBytes item) {
        const Status status = completion_.complete(std::move(s));
        if (status != Status::stale_completion || item.empty()) return;
        if (!spec_.revoke_on_remove && !spec_.revoke_superseded_after) return;
        core_->revoke(credential_, "never published", std::move(item), std::nullopt, [] {});
    }

    void finish(RefreshOutcome outcome) { (void)completion_.complete(std::move(outcome)); }

    std::shared_ptr<Core> core_;
    const VaultProviderSpec &spec_;
    Completion completion_;
    std::string credential_;
    std::optional<SecretBytes> current_;
    bool renewable_ = false;
    bool old_token_alive_ = false;
    Metadata metadata_;
    SecretBytes lease_id_;
    SecretBytes vault_token_;
};

}  // namespace

// ---------------------------------------------------------------------------------
// VaultProvider

VaultProvider::VaultProvider(std::shared_ptr<HttpClient> client, asio::io_context &io,
                             const VaultProviderSpec &spec, VaultLogFunction log)
    : core_(std::make_shared<Core>(std::move(client), io, spec, std::move(log))) {}

VaultProvider::~VaultProvider() = default;

void VaultProvider::refresh(const RefreshRequest &request, Completion completion) {
    std::make_shared<Flow>(core_, request, completion)->start();
}

bool VaultProvider::wants_release() const {
    return core_->spec.revoke_on_remove || core_->has_pending();
}

void VaultProvider::release(const ReleaseRequest &request, std::function<void()> done) {
    const std::string credential(request.credential);
    std::vector<std::pair<std::string, SecretBytes>> items;
    for (Core::Pending &p : core_->take_all_pending()) {
        items.emplace_back("superseded", std::move(p.item));
    }
    if (core_->spec.revoke_on_remove && request.current != nullptr) {
        const bool token = core_->spec.kind == VaultProviderSpec::Kind::token;
        if (token) {
            items.emplace_back("current", request.current->value);
        } else if (request.current->refresh && !request.current->refresh->empty()) {
            items.emplace_back("current", *request.current->refresh);
        }
    }
    if (items.empty()) {
        done();
        return;
    }
    // `done` runs once, after the last revocation answers.
    auto left = std::make_shared<std::atomic<std::size_t>>(items.size());
    auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
    for (auto &[why, item] : items) {
        core_->revoke(credential, why, std::move(item), request.deadline, [left, shared_done] {
            if (left->fetch_sub(1) == 1) (*shared_done)();
        });
    }
}

// ---------------------------------------------------------------------------------
// Configuration

namespace {

bool loopback(const std::string &host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

constexpr Duration kMaxSetting = std::chrono::hours(24 * 365);

// A file name setting: present and not empty when required.
void read_file_setting(ObjectReader &r, std::string_view key, bool required, std::string &out) {
    auto f = r.string(key, required);
    if (!f) return;
    if (f->empty() || f->find('\0') != std::string::npos || f->back() == '/') {
        r.errors().add(JsonPath(r.path(), key), "expected the path of a file");
        return;
    }
    out = *f;
}

// A Vault path segment list: letters, digits and - _ . / + @ = : only, no "..", no
// query; leading slashes are dropped.
std::optional<std::string> vault_path_problem(std::string_view p) {
    if (p.empty()) return "is empty";
    if (p.find("..") != std::string_view::npos) return "must not contain \"..\"";
    for (char c : p) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '/' ||
                        c == '+' || c == '@' || c == '=' || c == ':';
        if (!ok) return "may contain only letters, digits and - _ . / + @ = :";
    }
    return std::nullopt;
}

}  // namespace

void read_vault_provider_spec(ObjectReader &r, const JsonPath &path, JsonErrors &errors,
                              const std::string &type, HookSpec &out) {
    const bool token = type == "vault_token";
    if (token) {
        r.allow_only({"type", "address", "token_file", "approle", "namespace", "increment",
                      "revoke_on_remove", "revoke_superseded_after", "tls", "timeouts",
                      "max_response_bytes"});
    } else {
        r.allow_only({"type", "address", "path", "token_file", "namespace", "increment",
                      "revoke_on_remove", "revoke_superseded_after", "tls", "timeouts",
                      "max_response_bytes"});
    }
    auto spec = std::make_shared<VaultProviderSpec>();
    spec->kind = token ? VaultProviderSpec::Kind::token : VaultProviderSpec::Kind::lease;

    if (auto address = r.string("address", true)) {
        std::string why;
        auto parsed = parse_http_url(*address, &why);
        if (!parsed) {
            errors.add(JsonPath(path, "address"), "not a usable URL: " + why);
        } else if (!parsed->tls && !loopback(parsed->host)) {
            errors.add(JsonPath(path, "address"),
                       "must be https:// (plain http is accepted only to a loopback address)");
        } else if (parsed->target.find('?') != std::string::npos) {
            errors.add(JsonPath(path, "address"), "must not have a query");
        }
        spec->endpoint.address = *address;
    }
    read_file_setting(r, "token_file", !token, spec->token_file);
    if (auto ns = r.string("namespace")) {
        while (!ns->empty() && ns->back() == '/')
            ns->pop_back();
        if (auto why = vault_path_problem(*ns)) {
            errors.add(JsonPath(path, "namespace"), "namespace " + *why);
        }
        spec->endpoint.vault_namespace = *ns;
    }
    if (auto d = r.duration("increment", std::chrono::seconds(1), kMaxSetting)) {
        spec->increment = *d;
    }
    if (auto b = r.boolean("revoke_on_remove")) spec->revoke_on_remove = *b;
    if (auto d = r.duration("revoke_superseded_after", Duration::zero(), kMaxSetting)) {
        spec->revoke_superseded_after = *d;
    }

    if (token) {
        if (const boost::json::value *a = r.raw("approle")) {
            const JsonPath approle_path(path, "approle");
            ObjectReader ar(*a, approle_path, errors);
            ar.allow_only({"role_id_file", "secret_id_file", "mount"});
            read_file_setting(ar, "role_id_file", true, spec->role_id_file);
            read_file_setting(ar, "secret_id_file", true, spec->secret_id_file);
            if (auto m = ar.string("mount")) {
                std::string_view mount = *m;
                while (!mount.empty() && mount.back() == '/')
                    mount.remove_suffix(1);
                if (auto why = vault_path_problem(mount)) {
                    errors.add(JsonPath(approle_path, "mount"), "mount " + *why);
                }
                spec->approle_mount = std::string(mount);
            }
            if (!ar.valid()) spec->role_id_file.clear();
        } else if (r.valid() && !r.has("token_file")) {
            errors.add(JsonPath(path, "token_file"),
                       "give a token_file, an approle, or both: there is no way to a token");
        }
    } else if (auto p = r.string("path", true)) {
        std::string_view vpath = *p;
        while (!vpath.empty() && vpath.front() == '/')
            vpath.remove_prefix(1);
        if (vpath.substr(0, 3) == "v1/") {
            errors.add(JsonPath(path, "path"), "give the API path without \"/v1/\"");
        } else if (auto why = vault_path_problem(vpath)) {
            errors.add(JsonPath(path, "path"), "path " + *why);
        }
        spec->path = std::string(vpath);
    }

    read_http_options(r, path, errors, spec->endpoint.tls, spec->endpoint.options, true);
    out.vault = std::move(spec);
}

}  // namespace keyturn
