#include "core/spec.hpp"

#include <unordered_set>

#include "core/json_support.hpp"
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

std::size_t hash_of(const CredentialSpec &spec) noexcept {
    std::size_t h = std::hash<std::string>{}(spec.provider.name);
    auto mix = [&h](std::size_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix(std::hash<std::string>{}(spec.id));
    mix(std::hash<std::string>{}(spec.store.path.native()));
    mix(std::hash<double>{}(spec.policy.refresh_at));
    mix(std::hash<double>{}(spec.policy.jitter));
    mix(spec.policy.lead ? static_cast<std::size_t>(spec.policy.lead->count()) : 1);
    mix(static_cast<std::size_t>(spec.policy.backoff.initial.count()));
    mix(spec.hook_timeout ? static_cast<std::size_t>(spec.hook_timeout->count()) : 1);
    mix(spec.serve_stale ? 2 : 3);
    mix(spec.metadata.size());
    return h;
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

void read_provider(const json::value &value, const JsonPath &path, JsonErrors &errors,
                   ProviderSpec &out) {
    ObjectReader r(value, path, errors);
    r.allow_only({"type", "name"});
    if (auto type = r.string("type", true)) {
        if (*type != "hook") {
            errors.add(JsonPath(path, "type"), "expected \"hook\" (the only provider so far)");
        }
        out.type = *type;
    }
    if (auto name = r.string("name", true)) {
        if (auto why = check_identifier(*name)) {
            errors.add(JsonPath(path, "name"), "hook name " + *why);
        }
        out.name = *name;
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
        read_provider(*p, JsonPath(path, "provider"), mine, spec.provider);
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
                        const CredentialSink &on_credential) {
    // The whole document is freed at once: a monotonic arena makes parsing and
    // freeing a configuration of a million credentials cheap.
    json::monotonic_resource arena;
    json::value value = parse_plain(json_text, kMaxConfigSize, "configuration", &arena);
    JsonErrors errors;
    EngineSettings settings;

    const JsonPath root;
    ObjectReader top(value, root, errors);
    top.allow_only({"engine", "credentials"});
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
        for (std::size_t i = 0; i < array->size(); ++i) {
            const JsonPath path(credentials_path, i);
            auto spec = read_credential_spec((*array)[i], path, errors);
            // Once the document has a mistake, its credentials are only checked.
            if (!spec || !errors.empty()) continue;
            const std::string id = spec->id;
            try {
                on_credential(std::move(*spec));
            } catch (const Error &e) {
                // The sink finds duplicates (the engine refuses a second id).
                if (e.status() == Status::exists) {
                    errors.add(JsonPath(path, "id"), "duplicate id \"" + id + "\"");
                } else {
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
        });
    return config;
}

}  // namespace keyturn
