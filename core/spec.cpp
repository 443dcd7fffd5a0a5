#include "core/spec.hpp"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "core/json_support.hpp"
#include "core/rotation.hpp"
#include "core/status.hpp"

namespace keyturn {

namespace json = boost::json;

std::optional<std::string> check_identifier(std::string_view id) {
    if (id.empty()) return "is empty";
    if (id.size() > kMaxIdLength) {
        return "is " + std::to_string(id.size()) + " bytes long; at most " +
               std::to_string(kMaxIdLength) + " are allowed";
    }
    for (char c : id) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == ':' || c == '@' || c == '/';
        if (!ok) return "may contain only letters, digits and . _ - : @ /";
    }
    return std::nullopt;
}

std::string HookSpec::describe() const {
    if (type == "exec") return "exec hook \"" + (command.empty() ? "" : command[0]) + "\"";
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
    auto value = [&](const auto &v) { bytes(&v, sizeof v); };
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

void read_hook(const json::value &value, const JsonPath &path, JsonErrors &errors, HookSpec &out) {
    ObjectReader r(value, path, errors);
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
        errors.add(JsonPath(path, "type"), "expected \"hook\" or \"exec\"");
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
        errors.add(JsonPath(path, "type"), "expected \"memory\" or \"file\"");
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

std::optional<CredentialSpec> read_credential_spec(const json::value &value, const JsonPath &path,
                                                   JsonErrors &errors) {
    JsonErrors mine;
    CredentialSpec spec;
    ObjectReader r(value, path, mine);
    r.allow_only({"id", "provider", "store", "policy", "hook_timeout", "serve_stale", "metadata"});
    if (auto id = r.string("id", true)) {
        if (auto why = check_identifier(*id)) mine.add(JsonPath(path, "id"), "id " + *why);
        spec.id = *id;
    }
    if (const json::value *p = r.raw("provider")) {
        read_hook(*p, JsonPath(path, "provider"), mine, spec.provider);
    } else if (r.valid()) {
        mine.add(JsonPath(path, "provider"), "is required");
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
    // A spec is small: parse it into a buffer on the stack, not the heap.
    unsigned char buffer[4096];
    json::monotonic_resource arena(buffer, sizeof buffer);
    json::value value = parse_plain(json_text, kMaxSpecSize, "credential spec", &arena);
    JsonErrors errors;
    auto spec = read_credential_spec(value, JsonPath(), errors);
    if (!spec) throw Error(Status::config, "credential spec: " + errors.text());
    return std::move(*spec);
}

void load_engine_config(std::string_view json_text, const SettingsSink &on_settings,
                        const CredentialSink &on_credential, const SecretSink &on_secret) {
    // The whole document is freed at once: a monotonic arena makes parsing and
    // freeing a configuration of a million credentials cheap.
    json::monotonic_resource arena;
    json::value value = parse_plain(json_text, kMaxConfigSize, "configuration", &arena);
    JsonErrors errors;
    EngineSettings settings;

    const JsonPath root;
    ObjectReader top(value, root, errors);
    top.allow_only({"engine", "credentials", "secrets"});
    if (const json::value *e = top.raw("engine")) {
        const JsonPath engine_path(root, "engine");
        ObjectReader r(*e, engine_path, errors);
        r.allow_only({"threads", "hook_timeout", "drain_timeout"});
        if (auto n = r.integer("threads", 1, 64)) settings.threads = static_cast<int>(*n);
        if (auto d = r.duration("hook_timeout", std::chrono::milliseconds(1), kMaxDuration)) {
            settings.hook_timeout = *d;
        }
        if (auto d = r.duration("drain_timeout", Duration::zero(), std::chrono::hours(1))) {
            settings.drain_timeout = *d;
        }
    }
    const json::value *c = top.raw("credentials");
    const json::array *array = c != nullptr ? c->if_array() : nullptr;
    if (c != nullptr && array == nullptr) {
        errors.add("credentials", "expected an array of credential specs");
    }
    on_settings(settings, array != nullptr ? array->size() : 0);

    if (array != nullptr) {
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
        if (array->size() >= kPipelineFrom) pipeline.emplace(on_credential);
        for (std::size_t i = 0; i < array->size(); ++i) {
            const JsonPath path(credentials_path, i);
            auto spec = read_credential_spec((*array)[i], path, errors);
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
    if (const json::value *sv = top.raw("secrets")) {
        const JsonPath secrets_path(root, "secrets");
        const json::array *secrets = sv->if_array();
        if (secrets == nullptr) {
            errors.add(secrets_path, "expected an array of secret specs");
        } else if (!on_secret && !secrets->empty()) {
            errors.add(secrets_path, "secrets are not accepted here");
        } else {
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
                const std::string id = spec->id;
                try {
                    on_secret(std::move(*spec));
                } catch (const Error &e) {
                    errors.add(path, e.what());
                }
            }
        }
    }
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
