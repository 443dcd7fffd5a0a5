#include "core/spec.hpp"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "core/duration.hpp"
#include "core/http_options_reader.hpp"
#include "core/http_providers.hpp"
#include "core/json_support.hpp"
#include "core/rotation.hpp"
#include "core/status.hpp"
#include "core/vault_kv_store.hpp"
#include "core/vault_providers.hpp"

namespace keyturn {

namespace json = boost::json;

std::optional<std::string> check_identifier(std::string_view id) {
    if (id.empty()) return "is empty";
    if (id.size() > kMaxIdLength) {
        return "is " + std::to_string(id.size()) + " bytes long; at most " +
               std::to_string(kMaxIdLength) + " are allowed";
    }
    // A table, as every credential's id and hook name is checked on registration.
    static constexpr auto allowed = [] {
        std::array<bool, 256> table{};
        for (int c = 0; c < 256; ++c) {
            table[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-' || c == ':' || c == '@' || c == '/';
        }
        return table;
    }();
    for (char c : id) {
        if (!allowed[static_cast<unsigned char>(c)]) {
            return "may contain only letters, digits and . _ - : @ /";
        }
    }
    return std::nullopt;
}

std::string HookSpec::describe() const {
    if (type == "exec") return "exec hook \"" + (command.empty() ? "" : command[0]) + "\"";
    if (vault) return "the " + type + " provider";
    return "hook \"" + name + "\"";
}

std::size_t hash_of(const CredentialSpec &spec) noexcept {
    // FNV-1a over the fields that tell specs apart; equality decides the rest. The
    // id is left out: specs are shared between credentials once their id is moved out.
    std::uint64_t h = 1469598103934665603ull;
    auto bytes = [&h](const void *data, std::size_t size) {
        const auto *p = static_cast<const unsigned char *>(data);
        for (std::size_t i = 0; i < size; ++i) {
            h ^= p[i];
            h *= 1099511628211ull;
        }
    };
    auto text = [&](const std::string &s) { bytes(s.data(), s.size()); };
    // Fixed-size fields are mixed in whole rather than byte by byte.
    auto value = [&h](const auto &v) {
        std::uint64_t word = 0;
        static_assert(sizeof v <= sizeof word);
        std::memcpy(&word, &v, sizeof v);
        h = (h ^ word) * 1099511628211ull;
        h ^= h >> 29;
    };
    text(spec.provider.type);
    text(spec.provider.name);
    text(spec.store.path);
    value(spec.policy.refresh_at);
    value(spec.policy.jitter);
    value(spec.policy.backoff.initial);
    value(spec.serve_stale);
    const std::size_t metadata_size = spec.metadata.size();
    value(metadata_size);
    return static_cast<std::size_t>(h);
}

namespace {

constexpr Duration kMaxDuration = std::chrono::hours(24 * 365);

void read_backoff(const json::value &value, const JsonPath &path, JsonErrors &errors,
                  BackoffPolicy &out) {
    ObjectReader r(value, path, errors);
    r.allow_only({"initial", "multiplier", "max", "jitter"});
    if (auto d = r.duration("initial", std::chrono::milliseconds(1), kMaxDuration))
        out.initial = *d;
    if (auto m = r.number("multiplier", 1.0, 10.0, "a number between 1 and 10"))
        out.multiplier = *m;
    if (auto d = r.duration("max", std::chrono::milliseconds(1), kMaxDuration)) out.max = *d;
    if (auto j = r.number("jitter", 0.0, 1.0, "a number between 0 and 1")) out.jitter = *j;
    if (r.valid() && out.max < out.initial) {
        errors.add(JsonPath(path, "max"), "must not be shorter than backoff.initial");
    }
}

void read_policy(const json::value &value, const JsonPath &path, JsonErrors &errors,
                 RefreshPolicy &out) {
    ObjectReader r(value, path, errors);
    r.allow_only({"refresh_at", "lead", "jitter", "backoff"});
    if (auto f = r.number("refresh_at", 0.05, 0.95, "a number between 0.05 and 0.95")) {
        out.refresh_at = *f;
    }
    if (auto d = r.duration("lead", Duration::zero(), kMaxDuration)) out.lead = *d;
    if (auto j = r.number("jitter", 0.0, 0.5, "a number between 0 and 0.5")) out.jitter = *j;
    if (const json::value *b = r.raw("backoff")) {
        read_backoff(*b, JsonPath(path, "backoff"), errors, out.backoff);
    }
}

bool is_env_name(std::string_view name) {
    if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

// Plain HTTP is accepted only to a loopback address: anywhere else a token would
// cross the network in the clear.
bool loopback_host(const std::string &host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

void read_http_provider(ObjectReader &r, const JsonPath &path, JsonErrors &errors,
                        const std::string &type, HookSpec &out) {
    const bool oauth2 = type == "oauth2";
    if (oauth2) {
        r.allow_only({"type", "token_url", "client_id", "client_secret_file", "client_auth",
                      "scope", "tls", "timeouts", "max_response_bytes", "default_lifetime"});
    } else {
        r.allow_only({"type", "url", "method", "headers", "body", "body_format", "response", "tls",
                      "timeouts", "max_response_bytes", "default_lifetime"});
    }
    auto spec = std::make_shared<HttpProviderSpec>();
    const char *url_key = oauth2 ? "token_url" : "url";
    if (auto url = r.string(url_key, true)) {
        std::string why;
        auto parsed = parse_http_url(*url, &why);
        if (!parsed) {
            errors.add(JsonPath(path, url_key), "not a usable URL: " + why);
        } else if (!parsed->tls && !loopback_host(parsed->host)) {
            errors.add(JsonPath(path, url_key),
                       "must be https:// (plain http is accepted only to a loopback address)");
        }
        spec->url = *url;
    }
    if (oauth2) {
        if (auto id = r.string("client_id", true)) spec->client_id = *id;
        if (auto f = r.string("client_secret_file")) spec->client_secret_file = *f;
        if (auto a = r.string("client_auth")) {
            if (*a == "basic") {
                spec->auth = OAuth2Client::Auth::basic;
            } else if (*a == "body") {
                spec->auth = OAuth2Client::Auth::body;
            } else {
                errors.add(JsonPath(path, "client_auth"), "expected \"basic\" or \"body\"");
            }
        }
        if (auto sc = r.string("scope")) spec->scope = *sc;
    } else {
        if (auto m = r.string("method")) {
            if (*m != "POST" && *m != "GET" && *m != "PUT" && *m != "PATCH") {
                errors.add(JsonPath(path, "method"), "expected POST, GET, PUT or PATCH");
            }
            spec->method = *m;
        }
        if (const json::value *h = r.raw("headers")) {
            const JsonPath headers_path(path, "headers");
            if (const json::object *o = h->if_object()) {
                for (const auto &item : *o) {
                    const json::string *v = item.value().if_string();
                    if (item.key().empty() ||
                        item.key().find_first_of(" :\r\n\t") != std::string_view::npos) {
                        errors.add(JsonPath(headers_path, item.key()), "not a header name");
                    } else if (v == nullptr || v->find_first_of("\r\n") != json::string::npos) {
                        errors.add(JsonPath(headers_path, item.key()),
                                   "expected a string without line breaks");
                    } else {
                        spec->headers.emplace_back(item.key(), *v);
                    }
                }
            } else {
                errors.add(headers_path, "expected an object of strings");
            }
        }
        if (auto b = r.string("body")) spec->body = *b;
        if (auto f = r.string("body_format")) {
            if (*f == "json") {
                spec->body_encoding = TemplateEncoding::json;
            } else if (*f == "form") {
                spec->body_encoding = TemplateEncoding::form;
            } else {
                errors.add(JsonPath(path, "body_format"), "expected \"json\" or \"form\"");
            }
        }
        auto check_placeholders = [&](const std::string &text, const JsonPath &where) {
            std::vector<std::string> names;
            uses_placeholders(text, &names);
            for (const auto &n : names) {
                if (n != "value" && n != "refresh") {
                    errors.add(where, "unknown placeholder {{" + n.substr(0, 32) +
                                          "}}: expected {{value}} or {{refresh}}");
                }
            }
        };
        check_placeholders(spec->body, JsonPath(path, "body"));
        for (const auto &[name, text] : spec->headers)
            check_placeholders(text, JsonPath(JsonPath(path, "headers"), name));
        const JsonPath response_path(path, "response");
        if (const json::value *m = r.raw("response")) {
            ObjectReader mr(*m, response_path, errors);
            mr.allow_only({"value", "refresh", "expires_at", "expires_in"});
            auto pointer = [&](const char *key) -> std::optional<std::string> {
                auto p = mr.string(key, std::string_view(key) == "value");
                if (p) {
                    if (auto why = check_json_pointer(*p)) {
                        errors.add(JsonPath(response_path, key), "JSON Pointer " + *why);
                    }
                }
                return p;
            };
            if (auto v = pointer("value")) spec->response.value = *v;
            spec->response.refresh = pointer("refresh");
            spec->response.expires_at = pointer("expires_at");
            spec->response.expires_in = pointer("expires_in");
            if (spec->response.expires_at && spec->response.expires_in) {
                errors.add(JsonPath(response_path, "expires_in"),
                           "give \"expires_at\" or \"expires_in\", not both");
            }
        } else if (r.valid()) {
            errors.add(response_path, "is required: where the value is in the answer");
        }
    }
    read_http_options(r, path, errors, spec->tls, spec->options, true);
    if (auto d = r.duration("default_lifetime", std::chrono::seconds(1), kMaxDuration)) {
        spec->default_lifetime = *d;
    }
    out.http = std::move(spec);
}

void read_hook(const json::value &value, const JsonPath &path, JsonErrors &errors, HookSpec &out,
               bool refresh_provider = false) {
    ObjectReader r(value, path, errors);
    if (const json::value *t = r.raw("type");
        refresh_provider && t && t->is_string() &&
        (t->get_string() == "oauth2" || t->get_string() == "http_json")) {
        out.type = std::string(t->get_string());
        read_http_provider(r, path, errors, out.type, out);
        return;
    }
    if (const json::value *t = r.raw("type");
        refresh_provider && t && t->is_string() &&
        (t->get_string() == "vault_token" || t->get_string() == "vault_lease")) {
        out.type = std::string(t->get_string());
        read_vault_provider_spec(r, path, errors, out.type, out);
        return;
    }
    r.allow_only({"type", "name", "command", "env"});
    auto type = r.string("type", true);
    if (!type) return;
    out.type = *type;
    if (*type == "hook") {
        if (auto name = r.string("name", true)) {
            if (auto why = check_identifier(*name)) {
                errors.add(JsonPath(path, "name"), "hook name " + *why);
            }
            out.name = *name;
        }
        if (r.has("command")) errors.add(JsonPath(path, "command"), "only an exec hook has one");
        if (r.has("env")) errors.add(JsonPath(path, "env"), "only an exec hook has one");
        return;
    }
    if (*type != "exec") {
        errors.add(JsonPath(path, "type"),
                   refresh_provider ? "expected \"hook\", \"exec\", \"oauth2\", \"http_json\", "
                                      "\"vault_token\" or \"vault_lease\""
                                    : "expected \"hook\" or \"exec\"");
        return;
    }
    if (r.has("name")) errors.add(JsonPath(path, "name"), "an exec hook has a command, not a name");
    const JsonPath command_path(path, "command");
    const json::value *command = r.raw("command");
    const json::array *argv = command != nullptr ? command->if_array() : nullptr;
    if (argv == nullptr || argv->empty()) {
        errors.add(command_path,
                   "expected a non-empty array of strings: the program and its "
                   "arguments");
    } else {
        for (std::size_t i = 0; i < argv->size(); ++i) {
            const json::string *arg = (*argv)[i].if_string();
            if (arg == nullptr || (i == 0 && arg->empty()) ||
                arg->find('\0') != json::string::npos) {
                errors.add(JsonPath(command_path, i),
                           i == 0 ? "expected the program's path" : "expected a string");
                continue;
            }
            out.command.emplace_back(*arg);
        }
    }
    if (const json::value *env = r.raw("env")) {
        const JsonPath env_path(path, "env");
        const json::object *vars = env->if_object();
        if (vars == nullptr) {
            errors.add(env_path, "expected an object of strings");
            return;
        }
        for (const auto &item : *vars) {
            const json::string *v = item.value().if_string();
            if (!is_env_name(item.key())) {
                errors.add(JsonPath(env_path, item.key()), "not a valid environment variable name");
            } else if (v == nullptr || v->find('\0') != json::string::npos) {
                errors.add(JsonPath(env_path, item.key()), "expected a string");
            } else {
                out.env.emplace_back(item.key(), *v);
            }
        }
    }
}

void read_store(const json::value &value, const JsonPath &path, JsonErrors &errors,
                StoreSpec &out) {
    ObjectReader r(value, path, errors);
    if (const json::value *t = r.raw("type");
        t && t->is_string() && t->get_string() == "vault_kv") {
        out.kind = StoreSpec::Kind::vault_kv;
        out.vault_kv = read_vault_kv_store_spec(r, errors);
        return;
    }
    r.allow_only({"type", "path"});
    auto type = r.string("type", true);
    if (!type) return;
    if (*type == "memory") {
        out.kind = StoreSpec::Kind::memory;
        if (r.has("path")) errors.add(JsonPath(path, "path"), "a memory store has no path");
    } else if (*type == "file") {
        out.kind = StoreSpec::Kind::file;
        if (auto p = r.string("path", true)) {
            if (p->empty() || p->find('\0') != std::string::npos || p->back() == '/') {
                errors.add(JsonPath(path, "path"), "expected the path of a file");
            } else {
                out.path = *p;
            }
        }
    } else {
        errors.add(JsonPath(path, "type"), "expected \"memory\", \"file\" or \"vault_kv\"");
    }
}

void read_metadata(const json::value &value, const JsonPath &path, JsonErrors &errors,
                   Metadata &out) {
    const json::object *object = value.if_object();
    if (object == nullptr) {
        errors.add(path, "expected an object of strings");
        return;
    }
    for (const auto &item : *object) {
        if (!item.value().is_string()) {
            errors.add(JsonPath(path, item.key()), "expected a string");
            continue;
        }
        out.emplace(std::string(item.key()), std::string(item.value().get_string()));
    }
}

json::value parse_plain(std::string_view text, std::size_t limit, std::string_view what,
                        json::storage_ptr storage = {}) {
    if (text.size() > limit) {
        throw Error(Status::config, std::string(what) + " is " + std::to_string(text.size()) +
                                        " bytes; at most " + std::to_string(limit) +
                                        " are allowed");
    }
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = 64;
    json::value value = json::parse(text, ec, std::move(storage), options);
    if (ec) {
        throw Error(Status::config, std::string(what) + ": not valid JSON (" + ec.message() + ")");
    }
    return value;
}

// --- the common shape, read without a document ------------------------------------
//
// Most credential specs look alike: an id, a hook provider, perhaps a store, a simple
// policy, metadata. These read them straight from the text with PlainJson. They
// accept exactly the specs that read_credential_spec accepts without a mistake and
// build the same spec; anything else (an exec hook, a backoff, an escape, a
// duplicate key, a mistake) answers false, and the caller reads the text again
// through Boost.JSON and read_credential_spec, which reports what is wrong.
//
// The two must agree: a key that read_credential_spec learns is unknown here, so such
// specs take the slower path until it is added; but a rule or a default that
// read_credential_spec applies to a key read here must be applied here as well.

// As ObjectReader::number: a number within [min, max].
bool plain_number(PlainJson &json, double min, double max, double &out) {
    double d = 0;
    if (!json.number(d) || !(d >= min && d <= max)) return false;
    out = d;
    return true;
}

// As ObjectReader::duration: seconds as a number, or text such as "30s".
template <class Field>
bool plain_duration(PlainJson &json, Duration min, Duration max, Field &out) {
    std::optional<Duration> d;
    double seconds = 0;
    std::string_view text;
    if (json.number(seconds)) {
        if (seconds >= 0 && seconds <= 100.0 * 365 * 86400) d = seconds_to_duration(seconds);
    } else if (json.string(text)) {
        d = parse_duration(text);
    }
    if (!d || *d < min || *d > max) return false;
    out = *d;
    return true;
}

// Calls `member(key, bit)` for each key of an object, `bit` being the key's place in
// `keys`; false for an unknown or repeated key.
template <std::size_t N, class Member>
bool plain_object(PlainJson &json, const std::array<std::string_view, N> &keys, Member &&member) {
    unsigned seen = 0;
    return json.object([&](std::string_view key) {
        for (std::size_t i = 0; i < N; ++i) {
            // Sizes first: most keys differ in length, and that test is inlined.
            if (key.size() != keys[i].size() || key != keys[i]) continue;
            if (seen & (1u << i)) return false;
            seen |= 1u << i;
            return member(i);
        }
        return false;
    });
}

bool read_plain_hook(PlainJson &json, HookSpec &out) {
    std::string_view type;
    std::string_view name;
    bool has_name = false;
    constexpr std::array<std::string_view, 2> keys{"type", "name"};
    const bool ok = plain_object(json, keys, [&](std::size_t key) {
        if (key == 0) return json.string(type);
        has_name = true;
        return json.string(name);
    });
    if (!ok || type != "hook" || !has_name || check_identifier(name)) return false;
    out.type = type;
    out.name = name;
    return true;
}

bool read_plain_store(PlainJson &json, StoreSpec &out) {
    std::string_view type;
    std::string_view path;
    bool has_path = false;
    constexpr std::array<std::string_view, 2> keys{"type", "path"};
    const bool ok = plain_object(json, keys, [&](std::size_t key) {
        if (key == 0) return json.string(type);
        has_path = true;
        return json.string(path);
    });
    if (!ok) return false;
    if (type == "memory" && !has_path) {
        out.kind = StoreSpec::Kind::memory;
        return true;
    }
    // A string read here holds no NUL: PlainJson refuses control characters.
    if (type == "file" && has_path && !path.empty() && path.back() != '/') {
        out.kind = StoreSpec::Kind::file;
        out.path = path;
        return true;
    }
    return false;  // a vault_kv store, or a mistake: the general reader's
}

bool read_plain_policy(PlainJson &json, RefreshPolicy &out) {
    constexpr std::array<std::string_view, 3> keys{"refresh_at", "lead", "jitter"};
    return plain_object(json, keys, [&](std::size_t key) {
        if (key == 0) return plain_number(json, 0.05, 0.95, out.refresh_at);
        if (key == 1) return plain_duration(json, Duration::zero(), kMaxDuration, out.lead);
        return plain_number(json, 0.0, 0.5, out.jitter);
    });
}

bool read_plain_metadata(PlainJson &json, Metadata &out) {
    return json.object([&](std::string_view key) {
        std::string_view value;
        return json.string(value) && out.emplace(key, value).second;
    });
}

// The whole text is one credential spec of the common shape.
bool read_plain_credential(std::string_view text, CredentialSpec &spec) {
    PlainJson json(text);
    constexpr std::array<std::string_view, 7> keys{
        "id", "provider", "store", "policy", "hook_timeout", "serve_stale", "metadata"};
    bool has_id = false;
    bool has_provider = false;
    const bool ok = plain_object(json, keys, [&](std::size_t key) {
        switch (key) {
            case 0: {
                std::string_view id;
                if (!json.string(id) || check_identifier(id)) return false;
                spec.id = id;
                has_id = true;
                return true;
            }
            case 1:
                has_provider = true;
                return read_plain_hook(json, spec.provider);
            case 2:
                return read_plain_store(json, spec.store);
            case 3:
                return read_plain_policy(json, spec.policy);
            case 4:
                return plain_duration(json, std::chrono::milliseconds(1), kMaxDuration,
                                      spec.hook_timeout);
            case 5:
                return json.boolean(spec.serve_stale);
            default:
                return read_plain_metadata(json, spec.metadata);
        }
    });
    return ok && has_id && has_provider && json.at_end();
}

// Hands specs to a sink on a second thread, in order and in batches, so that reading
// a large document and adding its credentials use two cores. Failures of the sink
// are kept with the index of their spec, for the caller to report at its path.
class SinkThread {
  public:
    struct Failure {
        std::size_t index;
        std::string id;
        Error error;
    };

    explicit SinkThread(const CredentialSink &sink) : sink_(sink), thread_([this] { run(); }) {}
    ~SinkThread() {
        if (thread_.joinable()) finish();
    }

    void push(std::size_t index, CredentialSpec &&spec) {
        batch_.emplace_back(index, std::move(spec));
        if (batch_.size() >= kBatch) flush();
    }

    // Waits for every spec to reach the sink; rethrows anything but an Error.
    std::vector<Failure> finish() {
        flush();
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        changed_.notify_all();
        thread_.join();
        if (unexpected_) std::rethrow_exception(unexpected_);
        return std::move(failures_);
    }

  private:
    static constexpr std::size_t kBatch = 1024;
    static constexpr std::size_t kMaxQueued = 8;  // bounds the specs held at once
    using Batch = std::vector<std::pair<std::size_t, CredentialSpec>>;

    void flush() {
        if (batch_.empty()) return;
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [this] { return queue_.size() < kMaxQueued; });
        queue_.push_back(std::move(batch_));
        batch_ = Batch();
        batch_.reserve(kBatch);
        changed_.notify_all();
    }

    void run() {
        for (;;) {
            Batch batch;
            {
                std::unique_lock lock(mutex_);
                changed_.wait(lock, [this] { return !queue_.empty() || done_; });
                if (queue_.empty()) return;
                batch = std::move(queue_.front());
                queue_.pop_front();
            }
            changed_.notify_all();
            for (auto &[index, spec] : batch) {
                std::string id = spec.id;
                try {
                    if (!unexpected_) sink_(std::move(spec));
                } catch (const Error &e) {
                    failures_.push_back({index, std::move(id), e});
                } catch (...) {
                    unexpected_ = std::current_exception();
                }
            }
        }
    }

    const CredentialSink &sink_;
    Batch batch_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Batch> queue_;
    bool done_ = false;
    // Written by the sink thread only, read after it has been joined.
    std::vector<Failure> failures_;
    std::exception_ptr unexpected_;
    std::thread thread_;  // last: it starts once everything above exists
};

// From this many credentials on, a configuration is loaded on two threads.
constexpr std::size_t kPipelineFrom = 4096;

}  // namespace

// Specs of the common shape are also read by read_plain_credential, above: what is
// checked or set here for its keys must stay the same there.
std::optional<CredentialSpec> read_credential_spec(const json::value &value, const JsonPath &path,
                                                   JsonErrors &errors) {
    JsonErrors mine;
    CredentialSpec spec;
    ObjectReader r(value, path, mine);
    r.allow_only(
        {"id", "provider", "store", "policy", "hook_timeout", "serve_stale", "metadata", "seed"});
    if (auto id = r.string("id", true)) {
        if (auto why = check_identifier(*id)) mine.add(JsonPath(path, "id"), "id " + *why);
        spec.id = *id;
    }
    if (const json::value *p = r.raw("provider")) {
        read_hook(*p, JsonPath(path, "provider"), mine, spec.provider, true);
    } else if (r.valid()) {
        mine.add(JsonPath(path, "provider"), "is required");
    }
    if (const json::value *seed = r.raw("seed")) {
        const JsonPath seed_path(path, "seed");
        ObjectReader sr(*seed, seed_path, mine);
        sr.allow_only({"file", "vault_kv", "format", "field"});
        const json::value *kv = sr.raw("vault_kv");
        if (auto f = sr.string("file", kv == nullptr)) {
            if (f->empty() || f->find('\0') != std::string::npos) {
                mine.add(JsonPath(seed_path, "file"), "expected the path of a file");
            }
            spec.seed_file = *f;
        }
        if (kv != nullptr) {
            const JsonPath kv_path(seed_path, "vault_kv");
            if (!spec.seed_file.empty()) {
                mine.add(kv_path, "a seed is a file or a Vault KV secret, not both");
            }
            ObjectReader kr(*kv, kv_path, mine);
            if (kr.valid()) {
                if (kr.raw("type") != nullptr) {
                    mine.add(JsonPath(kv_path, "type"), "unknown key");
                }
                spec.seed_vault_kv = read_vault_kv_store_spec(kr, mine);
            }
        }
        spec.seed_format = "refresh_token";
        if (auto f = sr.string("format")) {
            if (*f != "refresh_token" && *f != "token_document") {
                mine.add(JsonPath(seed_path, "format"),
                         "expected \"refresh_token\" or \"token_document\"");
            }
            spec.seed_format = *f;
        }
        if (auto f = sr.string("field")) {
            if (kv == nullptr || spec.seed_format != "refresh_token") {
                mine.add(JsonPath(seed_path, "field"),
                         "only a Vault KV seed of format \"refresh_token\" has a field");
            } else if (f->empty()) {
                mine.add(JsonPath(seed_path, "field"), "expected the name of a field");
            }
            spec.seed_field = *f;
        } else if (kv != nullptr && spec.seed_format == "refresh_token") {
            spec.seed_field = "refresh_token";
        }
    }
    if (const json::value *s = r.raw("store")) {
        read_store(*s, JsonPath(path, "store"), mine, spec.store);
    }
    if (const json::value *p = r.raw("policy")) {
        read_policy(*p, JsonPath(path, "policy"), mine, spec.policy);
    }
    if (auto d = r.duration("hook_timeout", std::chrono::milliseconds(1), kMaxDuration)) {
        spec.hook_timeout = *d;
    }
    if (auto b = r.boolean("serve_stale")) spec.serve_stale = *b;
    if (const json::value *m = r.raw("metadata")) {
        read_metadata(*m, JsonPath(path, "metadata"), mine, spec.metadata);
    }

    if (!mine.empty()) {
        for (const auto &line : mine.lines())
            errors.add("", line);
        return std::nullopt;
    }
    return spec;
}

std::optional<SecretSpec> read_secret_spec(const json::value &value, const JsonPath &path,
                                           JsonErrors &errors) {
    JsonErrors mine;
    SecretSpec spec;
    ObjectReader r(value, path, mine);
    r.allow_only({"id", "hook", "hooks", "store", "schedule", "retry", "keep_versions",
                  "hook_timeout", "seed_file", "metadata"});
    if (auto id = r.string("id", true)) {
        if (auto why = check_identifier(*id)) mine.add(JsonPath(path, "id"), "id " + *why);
        spec.id = *id;
    }
    if (const json::value *h = r.raw("hook")) {
        spec.hook.emplace();
        read_hook(*h, JsonPath(path, "hook"), mine, *spec.hook);
    }
    if (const json::value *h = r.raw("hooks")) {
        const JsonPath hooks_path(path, "hooks");
        ObjectReader hr(*h, hooks_path, mine);
        hr.allow_only({"create", "set", "test", "finish"});
        for (int step = 0; step < 4; ++step) {
            const char *name = step_name(static_cast<RotationStep>(step));
            if (const json::value *one = hr.raw(name)) {
                spec.steps[step].emplace();
                read_hook(*one, JsonPath(hooks_path, name), mine, *spec.steps[step]);
            } else if (hr.valid() && !spec.hook) {
                mine.add(JsonPath(hooks_path, name), "is required when there is no \"hook\"");
            }
        }
    } else if (r.valid() && !spec.hook) {
        mine.add(JsonPath(path, "hook"), "is required (or \"hooks\", one per step)");
    }
    if (const json::value *s = r.raw("store")) {
        read_store(*s, JsonPath(path, "store"), mine, spec.store);
    }
    if (const json::value *s = r.raw("schedule")) {
        spec.schedule = read_schedule(*s, JsonPath(path, "schedule"), mine);
    }
    if (const json::value *retry = r.raw("retry")) {
        const JsonPath retry_path(path, "retry");
        ObjectReader rr(*retry, retry_path, mine);
        rr.allow_only({"backoff", "max_attempts"});
        if (const json::value *b = rr.raw("backoff")) {
            read_backoff(*b, JsonPath(retry_path, "backoff"), mine, spec.backoff);
        }
        if (auto n = rr.integer("max_attempts", 1, 1000)) spec.max_attempts = static_cast<int>(*n);
    }
    if (auto n = r.integer("keep_versions", 0, 100)) spec.keep_versions = static_cast<int>(*n);
    if (auto d = r.duration("hook_timeout", std::chrono::milliseconds(1), kMaxDuration)) {
        spec.hook_timeout = *d;
    }
    if (auto f = r.string("seed_file")) {
        if (f->empty() || f->find('\0') != std::string::npos) {
            mine.add(JsonPath(path, "seed_file"), "expected the path of a file");
        } else {
            spec.seed_file = *f;
        }
    }
    if (const json::value *m = r.raw("metadata")) {
        read_metadata(*m, JsonPath(path, "metadata"), mine, spec.metadata);
    }
    if (!mine.empty()) {
        for (const auto &line : mine.lines())
            errors.add("", line);
        return std::nullopt;
    }
    return spec;
}

SecretSpec parse_secret_spec(std::string_view json_text) {
    json::value value = parse_plain(json_text, kMaxSpecSize, "secret spec");
    JsonErrors errors;
    auto spec = read_secret_spec(value, JsonPath(), errors);
    if (!spec) throw Error(Status::config, "secret spec: " + errors.text());
    return std::move(*spec);
}

CredentialSpec parse_credential_spec(std::string_view json_text) {
    CredentialSpec plain;
    if (json_text.size() <= kMaxSpecSize && read_plain_credential(json_text, plain)) return plain;

    // Not of the common shape, or wrong: the full parser, which names every mistake.
    // A spec is small: parse it into a buffer on the stack, not the heap.
    unsigned char buffer[4096];
    json::monotonic_resource arena(buffer, sizeof buffer);
    json::value value = parse_plain(json_text, kMaxSpecSize, "credential spec", &arena);
    JsonErrors errors;
    auto spec = read_credential_spec(value, JsonPath(), errors);
    if (!spec) throw Error(Status::config, "credential spec: " + errors.text());
    return std::move(*spec);
}

namespace {

void read_engine_settings(const json::value &value, JsonErrors &errors, EngineSettings &out) {
    const JsonPath root;
    const JsonPath engine_path(root, "engine");
    ObjectReader r(value, engine_path, errors);
    r.allow_only({"threads", "hook_timeout", "drain_timeout", "http_connections_per_origin"});
    if (auto n = r.integer("threads", 1, 64)) out.threads = static_cast<int>(*n);
    if (auto d = r.duration("hook_timeout", std::chrono::milliseconds(1), kMaxDuration)) {
        out.hook_timeout = *d;
    }
    if (auto d = r.duration("drain_timeout", Duration::zero(), std::chrono::hours(1))) {
        out.drain_timeout = *d;
    }
    if (auto n = r.integer("http_connections_per_origin", 1, 1024)) {
        out.http_connections_per_origin = static_cast<int>(*n);
    }
}

// Reads credentials[0 .. count) through `read_one(index, path)` and hands each valid
// spec to `on_credential`, on a second thread for a large configuration.
template <class ReadOne>
void load_credentials(std::size_t count, ReadOne &&read_one, const CredentialSink &on_credential,
                      JsonErrors &errors) {
    const JsonPath root;
    const JsonPath credentials_path(root, "credentials");
    // The sink finds duplicates: the engine refuses a second id.
    auto sink_failed = [&](std::size_t index, const std::string &id, const Error &e) {
        const JsonPath path(credentials_path, index);
        if (e.status() == Status::exists) {
            errors.add(JsonPath(path, "id"), "duplicate id \"" + id + "\"");
        } else {
            errors.add(path, e.what());
        }
    };
    std::optional<SinkThread> pipeline;
    if (count >= kPipelineFrom) pipeline.emplace(on_credential);
    for (std::size_t i = 0; i < count; ++i) {
        const JsonPath path(credentials_path, i);
        std::optional<CredentialSpec> spec = read_one(i, path);
        // Once the document has a mistake, its credentials are only checked.
        if (!spec || !errors.empty()) continue;
        if (pipeline) {
            pipeline->push(i, std::move(*spec));
            continue;
        }
        const std::string id = spec->id;
        try {
            on_credential(std::move(*spec));
        } catch (const Error &e) {
            sink_failed(i, id, e);
        }
    }
    if (pipeline) {
        for (const auto &f : pipeline->finish())
            sink_failed(f.index, f.id, f.error);
    }
}

void read_secrets(const json::value &value, JsonErrors &errors, const SecretSink &on_secret) {
    const JsonPath root;
    const JsonPath secrets_path(root, "secrets");
    const json::array *secrets = value.if_array();
    if (secrets == nullptr) {
        errors.add(secrets_path, "expected an array of secret specs");
        return;
    }
    if (!on_secret && !secrets->empty()) {
        errors.add(secrets_path, "secrets are not accepted here");
        return;
    }
    std::unordered_set<std::string> seen;
    for (std::size_t i = 0; i < secrets->size(); ++i) {
        const JsonPath path(secrets_path, i);
        auto spec = read_secret_spec((*secrets)[i], path, errors);
        if (!spec) continue;
        if (!seen.insert(spec->id).second) {
            errors.add(JsonPath(path, "id"), "duplicate id \"" + spec->id + "\"");
            continue;
        }
        if (!errors.empty()) continue;
        try {
            on_secret(std::move(*spec));
        } catch (const Error &e) {
            errors.add(path, e.what());
        }
    }
}

// Where the parts of a configuration lie in its text, found by PlainJson.
struct ConfigOutline {
    std::optional<std::string_view> engine;
    std::optional<std::string_view> secrets;
    bool has_credentials = false;
    // Offset and length of each credential spec.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> credentials;
};

// True when the text is plain JSON (see PlainJson) with no key at its top but
// "engine", "credentials" (an array) and "secrets", each at most once. Anything else
// is left to the full parser and its messages.
bool outline_config(std::string_view text, ConfigOutline &out) {
    if (text.size() > kMaxConfigSize) return false;
    PlainJson json(text);
    auto part = [&](std::optional<std::string_view> &where) {
        std::string_view span;
        if (where || !json.skip(span)) return false;
        where = span;
        return true;
    };
    const bool ok = json.object([&](std::string_view key) {
        if (key == "engine") return part(out.engine);
        if (key == "secrets") return part(out.secrets);
        if (key != "credentials" || out.has_credentials || !json.consume('[')) return false;
        out.has_credentials = true;
        if (json.consume(']')) return true;
        do {
            std::string_view span;
            if (!json.skip(span)) return false;
            out.credentials.emplace_back(static_cast<std::uint32_t>(span.data() - text.data()),
                                         static_cast<std::uint32_t>(span.size()));
        } while (json.consume(','));
        return json.consume(']');
    });
    return ok && json.at_end();
}

// A configuration that outline_config accepted: credentials of the common shape are
// read from the text; the rest is parsed part by part with Boost.JSON, each part on
// its own giving the same values, and so the same messages, as the whole document.
void load_outlined_config(std::string_view text, const ConfigOutline &outline,
                          const SettingsSink &on_settings, const CredentialSink &on_credential,
                          const SecretSink &on_secret) {
    JsonErrors errors;
    EngineSettings settings;
    if (outline.engine) {
        json::monotonic_resource arena;
        json::value value = parse_plain(*outline.engine, kMaxConfigSize, "configuration", &arena);
        read_engine_settings(value, errors, settings);
    }
    on_settings(settings, outline.credentials.size());

    if (outline.has_credentials) {
        auto read_one = [&](std::size_t i, const JsonPath &path) -> std::optional<CredentialSpec> {
            const auto [offset, length] = outline.credentials[i];
            const std::string_view span = text.substr(offset, length);
            CredentialSpec spec;
            if (read_plain_credential(span, spec)) return spec;
            unsigned char buffer[4096];
            json::monotonic_resource arena(buffer, sizeof buffer);
            json::value value = parse_plain(span, kMaxConfigSize, "configuration", &arena);
            return read_credential_spec(value, path, errors);
        };
        load_credentials(outline.credentials.size(), read_one, on_credential, errors);
    }
    if (outline.secrets) {
        json::monotonic_resource arena;
        json::value value = parse_plain(*outline.secrets, kMaxConfigSize, "configuration", &arena);
        read_secrets(value, errors, on_secret);
    }
    if (!errors.empty()) throw Error(Status::config, "configuration: " + errors.text());
}

}  // namespace

void load_engine_config(std::string_view json_text, const SettingsSink &on_settings,
                        const CredentialSink &on_credential, const SecretSink &on_secret) {
    ConfigOutline outline;
    if (outline_config(json_text, outline)) {
        load_outlined_config(json_text, outline, on_settings, on_credential, on_secret);
        return;
    }

    // The whole document is freed at once: a monotonic arena makes parsing and
    // freeing a configuration of a million credentials cheap.
    json::monotonic_resource arena;
    json::value value = parse_plain(json_text, kMaxConfigSize, "configuration", &arena);
    JsonErrors errors;
    EngineSettings settings;

    const JsonPath root;
    ObjectReader top(value, root, errors);
    top.allow_only({"engine", "credentials", "secrets"});
    if (const json::value *e = top.raw("engine")) read_engine_settings(*e, errors, settings);
    const json::value *c = top.raw("credentials");
    const json::array *array = c != nullptr ? c->if_array() : nullptr;
    if (c != nullptr && array == nullptr) {
        errors.add("credentials", "expected an array of credential specs");
    }
    on_settings(settings, array != nullptr ? array->size() : 0);

    if (array != nullptr) {
        auto read_one = [&](std::size_t i, const JsonPath &path) {
            return read_credential_spec((*array)[i], path, errors);
        };
        load_credentials(array->size(), read_one, on_credential, errors);
    }
    if (const json::value *sv = top.raw("secrets")) read_secrets(*sv, errors, on_secret);
    if (!errors.empty()) throw Error(Status::config, "configuration: " + errors.text());
}

EngineConfig parse_engine_config(std::string_view json_text) {
    EngineConfig config;
    load_engine_config(
        json_text,
        [&](const EngineSettings &settings, std::size_t count) {
            config.engine = settings;
            config.credentials.reserve(count);
        },
        [&, seen = std::unordered_set<std::string>()](CredentialSpec &&spec) mutable {
            if (!seen.insert(spec.id).second) {
                throw Error(Status::exists, "duplicate id \"" + spec.id + "\"");
            }
            config.credentials.push_back(std::move(spec));
        },
        [&](SecretSpec &&spec) { config.secrets.push_back(std::move(spec)); });
    return config;
}

}  // namespace keyturn
