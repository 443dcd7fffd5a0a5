#pragma once
// Configuration: the engine's settings and each credential's spec, parsed from JSON
// with every mistake reported at its JSON path.

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/refresh_policy.hpp"
#include "core/schedule.hpp"
#include "core/snapshot.hpp"

namespace keyturn {

struct HttpProviderSpec;   // http_providers.hpp
struct VaultProviderSpec;  // vault_providers.hpp

// Who answers a request: a refresh of a credential, or a step of a rotation.
struct HookSpec {
    // "hook": a callback registered through the C ABI under `name`.
    // "exec": the program `command` (argv, no shell), request on standard input,
    // result on standard output.
    std::string type = "hook";
    std::string name;
    std::vector<std::string> command;
    // Extra environment for an exec program; never secrets.
    std::vector<std::pair<std::string, std::string>> env;
    // "oauth2" (the refresh-token grant) and "http_json" (a JSON refresh API): the
    // endpoint and what to send. Compared by identity: specs that each carry one are
    // not shared between credentials.
    std::shared_ptr<const HttpProviderSpec> http;
    // "vault_token" and "vault_lease": the Vault server and what to keep alive there.
    // Compared by identity, as `http` is.
    std::shared_ptr<const VaultProviderSpec> vault;
    bool operator==(const HookSpec &) const = default;

    // "hook \"name\"" or "exec hook \"/path\"", for messages.
    std::string describe() const;
};
using ProviderSpec = HookSpec;

struct VaultKvStoreSpec;  // vault_kv_store.hpp

struct StoreSpec {
    enum class Kind { memory, file, vault_kv };
    Kind kind = Kind::memory;
    // Kept as text: a std::filesystem::path splits itself into components on every
    // move, which a million specs pay for.
    std::string path;
    // vault_kv: the server, the secret's path and the token. Compared by identity, as
    // HookSpec::http is.
    std::shared_ptr<const VaultKvStoreSpec> vault_kv;
    bool operator==(const StoreSpec &) const = default;
};

struct CredentialSpec {
    std::string id;
    ProviderSpec provider;
    StoreSpec store;
    RefreshPolicy policy;
    std::optional<Duration> hook_timeout;
    bool serve_stale = false;
    Metadata metadata;
    // Where the first value comes from when the store holds none: a file (mode 0600)
    // holding a refresh token ("refresh_token"), or a console's token document with
    // authToken, refreshToken and validUntil ("token_document").
    std::string seed_file;
    std::string seed_format;
    // Or a secret in Vault KV version 2: its fields are the token document, or its field
    // `seed_field` holds the refresh token. Compared by identity, as HookSpec::http is.
    std::shared_ptr<const VaultKvStoreSpec> seed_vault_kv;
    std::string seed_field;
    bool operator==(const CredentialSpec &) const = default;

    // True when a part compared by identity is set: the spec then equals no other.
    bool has_unique_part() const {
        return provider.http || provider.vault || store.vault_kv || seed_vault_kv;
    }
};

// A secret that keyturn rotates through create, set, test and finish.
struct SecretSpec {
    std::string id;
    // The hook for every step, unless `steps` names one for that step.
    std::optional<HookSpec> hook;
    // Indexed by RotationStep: create, set, test, finish.
    std::array<std::optional<HookSpec>, 4> steps;
    StoreSpec store;
    // Without a schedule a secret rotates only when asked to (and once at first,
    // when it has no value at all).
    std::optional<RotationSchedule> schedule;
    BackoffPolicy backoff{std::chrono::seconds(5), 2.0, std::chrono::minutes(30), 0.2};
    // Failed attempts after which a version id is abandoned and a new one started.
    int max_attempts = 5;
    // Past versions kept besides CURRENT: 1 keeps PREVIOUS only.
    int keep_versions = 1;
    std::optional<Duration> hook_timeout;
    // A file holding the first CURRENT value, read when the store has none.
    std::string seed_file;
    Metadata metadata;

    // The hook that runs `step` (steps are numbered as RotationStep).
    const HookSpec &hook_for(int step) const { return steps[step] ? *steps[step] : *hook; }
};

// A hash over the fields that usually differ between specs.
std::size_t hash_of(const CredentialSpec &spec) noexcept;

struct EngineSettings {
    int threads = 1;
    Duration hook_timeout = std::chrono::seconds(30);
    Duration drain_timeout = std::chrono::seconds(5);
    // Requests in flight at once to one HTTP origin (scheme, host, port, TLS settings)
    // from the engine's HTTP providers; more wait their turn.
    int http_connections_per_origin = 32;
};

struct EngineConfig {
    EngineSettings engine;
    std::vector<CredentialSpec> credentials;
    std::vector<SecretSpec> secrets;
};

inline constexpr std::size_t kMaxIdLength = 256;
inline constexpr std::size_t kMaxValueSize = 1u << 20;
inline constexpr std::size_t kMaxSpecSize = 4u << 20;
inline constexpr std::size_t kMaxConfigSize = 256u << 20;

// Why `id` is not a valid credential id or hook name, or nothing when it is.
std::optional<std::string> check_identifier(std::string_view id);

// Throw Error(config) listing every mistake, one per line.
CredentialSpec parse_credential_spec(std::string_view json_text);
SecretSpec parse_secret_spec(std::string_view json_text);
EngineConfig parse_engine_config(std::string_view json_text);

// The same without holding every spec at once: `on_settings` receives the engine's
// settings and the number of credentials first, then `on_credential` each valid
// spec in order. A mistake anywhere, or an Error thrown by `on_credential`, ends in
// one Error(config) listing every mistake with its path.
using SettingsSink = std::function<void(const EngineSettings &, std::size_t count)>;
using CredentialSink = std::function<void(CredentialSpec &&)>;
using SecretSink = std::function<void(SecretSpec &&)>;
// Secrets come after every credential. Without `on_secret`, a configuration with
// secrets is refused.
void load_engine_config(std::string_view json_text, const SettingsSink &on_settings,
                        const CredentialSink &on_credential, const SecretSink &on_secret = {});

// Lower-level forms that add mistakes to `errors` under `path`, for composing.
class JsonErrors;
class JsonPath;
std::optional<CredentialSpec> read_credential_spec(const boost::json::value &value,
                                                   const JsonPath &path, JsonErrors &errors);
std::optional<SecretSpec> read_secret_spec(const boost::json::value &value, const JsonPath &path,
                                           JsonErrors &errors);

}  // namespace keyturn
