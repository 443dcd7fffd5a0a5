#pragma once
// The agent's configuration file: the engine's configuration ("engine", "credentials",
// "secrets", as load_engine_config reads them) and one member only the agent reads:
//
//   "agent": {
//     "socket": "/run/keyturn/agent.sock",
//     "sinks": [{"credential": "api", "path": "/run/app/token", "mode": "0600"},
//               {"secret": "db-app", "path": "/run/app/db-password",
//                "label": "CURRENT", "mode": "0640"}],
//     "log_level": "info"
//   }
//
// Reading a configuration touches nothing: no store is opened and no hook runs.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "core/events.hpp"
#include "core/spec.hpp"

namespace keyturn::agent {

// A file that mirrors one credential's value, or the version of a secret that holds
// `label`.
struct SinkSpec {
    enum class Source { credential, secret };
    Source source = Source::credential;
    std::string id;
    std::string path;
    // Secrets only: "CURRENT", "PREVIOUS" or "PENDING".
    std::string label = "CURRENT";
    unsigned mode = 0600;
    bool operator==(const SinkSpec &) const = default;

    // "credential \"api\"" or "secret \"db-app\" (CURRENT)", for log lines.
    std::string describe() const;
};

struct AgentSettings {
    // Empty when the file names none.
    std::string socket;
    std::vector<SinkSpec> sinks;
    LogLevel log_level = LogLevel::info;
};

struct AgentConfig {
    EngineConfig engine;
    AgentSettings agent;
    // Every credential and secret as written in the file, by id: a reload compares
    // these to tell which specs changed.
    std::map<std::string, boost::json::value> credential_json;
    std::map<std::string, boost::json::value> secret_json;
};

// Parses a whole configuration. On any mistake returns nothing and appends every
// mistake to `errors`, each as "path: what was expected" (a mistake in the document
// as a whole has no path).
std::optional<AgentConfig> parse_agent_config(std::string_view text,
                                              std::vector<std::string> &errors);

// Reads `file` and parses it as parse_agent_config() does; a file that cannot be read
// is one more mistake.
std::optional<AgentConfig> load_agent_config(const std::string &file,
                                             std::vector<std::string> &errors);

// The socket used when neither the command line nor the file names one:
// $XDG_RUNTIME_DIR/keyturn.sock, else /tmp/keyturn-<uid>/agent.sock.
std::string default_socket_path();

// Creates the private directory /tmp/keyturn-<uid> (mode 0700) when `socket_path` is
// inside it, and refuses one that another user owns or others can enter. Throws
// std::runtime_error naming the directory and the cause.
void prepare_default_socket_directory(const std::string &socket_path);

const char *log_level_name(LogLevel level) noexcept;

}  // namespace keyturn::agent
