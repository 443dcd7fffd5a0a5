#pragma once
// Configuration: the engine's settings and each credential's spec, parsed from JSON
// with every mistake reported at its JSON path.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/refresh_policy.hpp"
#include "core/snapshot.hpp"

namespace keyturn {

struct ProviderSpec {
    // "hook": a callback registered through the C ABI under `name`.
    std::string type = "hook";
    std::string name;
    bool operator==(const ProviderSpec &) const = default;
};

struct StoreSpec {
    enum class Kind { memory, file };
    Kind kind = Kind::memory;
    // Kept as text: a std::filesystem::path splits itself into components on every
    // move, which a million specs pay for.
    std::string path;
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
    bool operator==(const CredentialSpec &) const = default;
};

// A hash over the fields that usually differ between specs.
std::size_t hash_of(const CredentialSpec &spec) noexcept;

struct EngineSettings {
    int threads = 1;
    Duration hook_timeout = std::chrono::seconds(30);
    Duration drain_timeout = std::chrono::seconds(5);
};

struct EngineConfig {
    EngineSettings engine;
    std::vector<CredentialSpec> credentials;
};

inline constexpr std::size_t kMaxIdLength = 256;
inline constexpr std::size_t kMaxValueSize = 1u << 20;
inline constexpr std::size_t kMaxSpecSize = 4u << 20;
inline constexpr std::size_t kMaxConfigSize = 256u << 20;

// Why `id` is not a valid credential id or hook name, or nothing when it is.
std::optional<std::string> check_identifier(std::string_view id);

// Throw Error(config) listing every mistake, one per line.
CredentialSpec parse_credential_spec(std::string_view json_text);
EngineConfig parse_engine_config(std::string_view json_text);

// The same without holding every spec at once: `on_settings` receives the engine's
// settings and the number of credentials first, then `on_credential` each valid
// spec in order. A mistake anywhere, or an Error thrown by `on_credential`, ends in
// one Error(config) listing every mistake with its path.
using SettingsSink = std::function<void(const EngineSettings &, std::size_t count)>;
using CredentialSink = std::function<void(CredentialSpec &&)>;
void load_engine_config(std::string_view json_text, const SettingsSink &on_settings,
                        const CredentialSink &on_credential);

// Lower-level forms that add mistakes to `errors` under `path`, for composing.
class JsonErrors;
class JsonPath;
std::optional<CredentialSpec> read_credential_spec(const boost::json::value &value,
                                                   const JsonPath &path, JsonErrors &errors);

}  // namespace keyturn
