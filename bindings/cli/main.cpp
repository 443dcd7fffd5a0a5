// The `keyturn` command: the agent (`keyturn run`) and the commands that talk to it.
//
// Exit codes, the same for every command:
//   0  success
//   1  runtime failure (the agent could not start, or the agent refused the request)
//   2  usage error (unknown command or option, missing argument)
//   3  invalid configuration
//   4  agent not reachable (nothing listens on the socket, or no answer in time)
//   5  not found (no credential or secret with that id)

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "bindings/cli/agent.hpp"
#include "bindings/cli/agent_config.hpp"
#include "bindings/cli/control_client.hpp"
#include "bindings/cli/status_table.hpp"

namespace {

namespace json = boost::json;
using namespace keyturn::agent;

enum Exit : int {
    kOk = 0,
    kFailure = 1,
    kUsage = 2,
    kInvalidConfig = 3,
    kUnreachable = 4,
    kNotFound = 5,
};

constexpr auto kClientTimeout = std::chrono::seconds(30);

constexpr const char *kExitCodes = R"TXT(Exit codes:
  0  success
  1  runtime failure
  2  usage error
  3  invalid configuration
  4  agent not reachable
  5  not found (no credential or secret with that id)
)TXT";

constexpr const char *kMainHelp = R"TXT(Usage: keyturn <command> [options]

keyturn keeps expiring credentials fresh and rotates secrets.

Commands:
  run       run the agent for a configuration file
  status    show the state of every credential and secret of a running agent
  refresh   refresh a credential now
  rotate    rotate a secret now
  validate  check a configuration file without starting anything

Run `keyturn <command> --help` for the options of a command.

)TXT";

constexpr const char *kRunHelp = R"TXT(Usage: keyturn run --config FILE [--socket PATH]

Runs the agent: keeps the credentials and secrets of FILE fresh, writes their
values to the configured sink files, and answers `keyturn status`, `refresh` and
`rotate` on a Unix socket (mode 0600, owner only).

FILE is the engine's configuration ("engine", "credentials", "secrets") plus an
"agent" member:
  "agent": {"socket": "/run/keyturn/agent.sock",
            "sinks": [{"credential": "api", "path": "/run/app/token", "mode": "0600"},
                      {"secret": "db", "path": "/run/app/db", "label": "CURRENT",
                       "mode": "0640"}],
            "log_level": "info"}
Hooks are programs: {"type": "exec", "command": ["/path/to/program", ...]}.

Options:
  --config FILE   the configuration file (required)
  --socket PATH   the control socket; default: agent.socket from FILE, else
                  $XDG_RUNTIME_DIR/keyturn.sock, else /tmp/keyturn-<uid>/agent.sock

Signals: SIGHUP reads FILE again and applies what changed (an invalid file is
logged and the running configuration stays); SIGTERM or SIGINT stops cleanly.
Logs go to standard error, one line each; values never appear in them.

)TXT";

constexpr const char *kStatusHelp =
    R"TXT(Usage: keyturn status [--json] [--socket PATH | --config FILE]

Asks the agent for the state of every credential (state, version, expiry, next
refresh, last error) and secret (state, current version, next rotation, last
result). Fingerprints only: no value is ever shown.

Options:
  --json          print the agent's JSON answer as it is
  --socket PATH   the agent's socket
  --config FILE   the agent's configuration file: its agent.socket is the socket
                  (the file is checked as `keyturn validate` checks it)
Without either: $XDG_RUNTIME_DIR/keyturn.sock, else /tmp/keyturn-<uid>/agent.sock.

)TXT";

constexpr const char *kRefreshHelp = R"TXT(Usage: keyturn refresh ID [--socket PATH | --config FILE]

Asks the agent to refresh credential ID now (a refresh already in flight counts
as that refresh). Returns at once; `keyturn status` shows the outcome.

Options:
  --socket PATH   the agent's socket
  --config FILE   the agent's configuration file, for its agent.socket
(The defaults are those of `keyturn status`.)

)TXT";

constexpr const char *kRotateHelp = R"TXT(Usage: keyturn rotate ID [--socket PATH | --config FILE]

Asks the agent to rotate secret ID now (or joins the rotation in flight) and
prints the rotation's version id. The rotation continues in the agent; `keyturn
status` shows its progress.

Options:
  --socket PATH   the agent's socket
  --config FILE   the agent's configuration file, for its agent.socket
(The defaults are those of `keyturn status`.)

)TXT";

constexpr const char *kValidateHelp = R"TXT(Usage: keyturn validate --config FILE

Checks a configuration file as `keyturn run` reads it, without starting anything
or opening any store. Prints "configuration is valid: N credential(s), M
secret(s)", or every mistake with its JSON path.

Options:
  --config FILE   the configuration file (required)

)TXT";

struct Args {
    std::string command;
    std::map<std::string, std::string> options;
    std::vector<std::string> positional;
    bool help = false;
};

int usage_error(const std::string &command, const std::string &message) {
    std::fprintf(stderr, "keyturn%s%s: %s\nRun `keyturn%s%s --help` for usage.\n",
                 command.empty() ? "" : " ", command.c_str(), message.c_str(),
                 command.empty() ? "" : " ", command.c_str());
    return kUsage;
}

// Options with a value (`--name VALUE` or `--name=VALUE`) and flags; anything else
// is positional. Returns nothing after reporting a usage error.
std::optional<Args> parse_args(const std::string &command, int argc, char **argv,
                               std::initializer_list<std::string_view> with_value,
                               std::initializer_list<std::string_view> flags, int &exit_code) {
    Args args;
    args.command = command;
    for (int i = 0; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            args.help = true;
            continue;
        }
        if (!arg.starts_with("--")) {
            args.positional.push_back(arg);
            continue;
        }
        std::string name = arg.substr(2);
        std::optional<std::string> value;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
        }
        const bool takes_value =
            std::find(with_value.begin(), with_value.end(), name) != with_value.end();
        const bool is_flag = std::find(flags.begin(), flags.end(), name) != flags.end();
        if (takes_value) {
            if (!value) {
                if (i + 1 >= argc) {
                    exit_code = usage_error(command, "--" + name + " needs a value");
                    return std::nullopt;
                }
                value = argv[++i];
            }
            args.options[name] = *value;
        } else if (is_flag && !value) {
            args.options[name] = "";
        } else {
            exit_code = usage_error(command, "unknown option " + arg);
            return std::nullopt;
        }
    }
    return args;
}

// Prints a configuration's mistakes as `keyturn validate` does.
void print_config_errors(const std::string &file, const std::vector<std::string> &errors) {
    std::fprintf(stderr, "%s: %zu error(s):\n", file.c_str(), errors.size());
    for (const std::string &line : errors)
        std::fprintf(stderr, "%s: %s\n", file.c_str(), line.c_str());
}

// The agent's socket: --socket, else agent.socket of the --config file, else the
// default. Nothing, with `exit_code` set, when the file is not a valid configuration.
std::optional<std::string> socket_of(const Args &args, int &exit_code) {
    if (auto it = args.options.find("socket"); it != args.options.end()) return it->second;
    if (auto it = args.options.find("config"); it != args.options.end()) {
        std::vector<std::string> errors;
        std::optional<AgentConfig> config = load_agent_config(it->second, errors);
        if (!config) {
            print_config_errors(it->second, errors);
            exit_code = kInvalidConfig;
            return std::nullopt;
        }
        if (!config->agent.socket.empty()) return config->agent.socket;
    }
    return default_socket_path();
}

// Sends `request` and returns the answer when it is a success; otherwise reports
// the failure and sets `exit_code`.
std::optional<json::object> ask_agent(const Args &args, const json::object &request,
                                      std::string *raw, int &exit_code) {
    if (args.options.contains("socket") && args.options.contains("config")) {
        exit_code = usage_error(args.command, "give --socket or --config, not both");
        return std::nullopt;
    }
    const std::optional<std::string> socket = socket_of(args, exit_code);
    if (!socket) return std::nullopt;
    std::string answer;
    try {
        answer = call_agent(*socket, json::serialize(request), kClientTimeout);
    } catch (const AgentUnreachable &e) {
        std::fprintf(stderr, "keyturn: %s\n", e.what());
        exit_code = kUnreachable;
        return std::nullopt;
    }
    boost::system::error_code ec;
    json::value value = json::parse(answer, ec);
    json::object *o = ec ? nullptr : value.if_object();
    if (o == nullptr) {
        std::fprintf(stderr, "keyturn: the agent's answer is not a JSON object\n");
        exit_code = kFailure;
        return std::nullopt;
    }
    const json::value *ok = o->if_contains("ok");
    if (ok == nullptr || !ok->is_bool() || !ok->get_bool()) {
        const json::value *error = o->if_contains("error");
        const json::value *code = o->if_contains("code");
        std::fprintf(stderr, "keyturn: %s\n",
                     error != nullptr && error->is_string() ? error->get_string().c_str()
                                                            : "the agent refused the request");
        exit_code = code != nullptr && code->is_string() && code->get_string() == "not_found"
                        ? kNotFound
                        : kFailure;
        return std::nullopt;
    }
    if (raw != nullptr) *raw = std::move(answer);
    return std::move(*o);
}

int cmd_run(int argc, char **argv) {
    int exit_code = kOk;
    auto args = parse_args("run", argc, argv, {"config", "socket"}, {}, exit_code);
    if (!args) return exit_code;
    if (args->help) {
        std::fputs(kRunHelp, stdout);
        std::fputs(kExitCodes, stdout);
        return kOk;
    }
    if (!args->positional.empty()) return usage_error("run", "unexpected " + args->positional[0]);
    if (!args->options.contains("config")) return usage_error("run", "--config FILE is required");
    RunOptions options;
    options.config_file = args->options["config"];
    if (args->options.contains("socket")) options.socket = args->options["socket"];
    return run_agent(options);
}

int cmd_validate(int argc, char **argv) {
    int exit_code = kOk;
    auto args = parse_args("validate", argc, argv, {"config"}, {}, exit_code);
    if (!args) return exit_code;
    if (args->help) {
        std::fputs(kValidateHelp, stdout);
        std::fputs(kExitCodes, stdout);
        return kOk;
    }
    if (!args->positional.empty()) {
        return usage_error("validate", "unexpected " + args->positional[0]);
    }
    if (!args->options.contains("config")) {
        return usage_error("validate", "--config FILE is required");
    }
    const std::string file = args->options["config"];
    std::vector<std::string> errors;
    std::optional<AgentConfig> config = load_agent_config(file, errors);
    if (!config) {
        print_config_errors(file, errors);
        return kInvalidConfig;
    }
    std::printf("configuration is valid: %zu credential(s), %zu secret(s)\n",
                config->engine.credentials.size(), config->engine.secrets.size());
    return kOk;
}

int cmd_status(int argc, char **argv) {
    int exit_code = kOk;
    auto args = parse_args("status", argc, argv, {"socket", "config"}, {"json"}, exit_code);
    if (!args) return exit_code;
    if (args->help) {
        std::fputs(kStatusHelp, stdout);
        std::fputs(kExitCodes, stdout);
        return kOk;
    }
    if (!args->positional.empty()) {
        return usage_error("status", "unexpected " + args->positional[0]);
    }
    std::string raw;
    auto answer = ask_agent(*args, json::object{{"op", "status"}}, &raw, exit_code);
    if (!answer) return exit_code;
    if (args->options.contains("json")) {
        std::printf("%s\n", raw.c_str());
    } else {
        std::fputs(format_status_table(*answer).c_str(), stdout);
    }
    return kOk;
}

// `refresh ID` and `rotate ID`.
int cmd_one_id(const std::string &command, const char *help, int argc, char **argv) {
    int exit_code = kOk;
    auto args = parse_args(command, argc, argv, {"socket", "config"}, {}, exit_code);
    if (!args) return exit_code;
    if (args->help) {
        std::fputs(help, stdout);
        std::fputs(kExitCodes, stdout);
        return kOk;
    }
    if (args->positional.size() != 1) return usage_error(command, "expected exactly one ID");
    json::object request{{"op", command}, {"id", args->positional[0]}};
    auto answer = ask_agent(*args, request, nullptr, exit_code);
    if (!answer) return exit_code;
    const char *key = command == "rotate" ? "version" : "message";
    const json::value *v = answer->if_contains(key);
    std::printf("%s\n", v != nullptr && v->is_string() ? v->get_string().c_str() : "ok");
    return kOk;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fputs(kMainHelp, stderr);
        std::fputs(kExitCodes, stderr);
        return kUsage;
    }
    const std::string command = argv[1];
    argc -= 2;
    argv += 2;
    try {
        if (command == "--help" || command == "-h" || command == "help") {
            std::fputs(kMainHelp, stdout);
            std::fputs(kExitCodes, stdout);
            return kOk;
        }
        if (command == "run") return cmd_run(argc, argv);
        if (command == "status") return cmd_status(argc, argv);
        if (command == "refresh") return cmd_one_id("refresh", kRefreshHelp, argc, argv);
        if (command == "rotate") return cmd_one_id("rotate", kRotateHelp, argc, argv);
        if (command == "validate") return cmd_validate(argc, argv);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keyturn %s: %s\n", command.c_str(), e.what());
        return kFailure;
    }
    return usage_error("", "unknown command \"" + command + "\"");
}
