#include "bindings/cli/agent_config.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <boost/json.hpp>

#include "core/json_support.hpp"
#include "core/status.hpp"

namespace keyturn::agent {

namespace json = boost::json;

std::string SinkSpec::describe() const {
    if (source == Source::credential) return "credential \"" + id + "\"";
    return "secret \"" + id + "\" (" + label + ")";
}

const char *log_level_name(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warning:
            return "warning";
        case LogLevel::error:
            return "error";
    }
    return "info";
}

namespace {

constexpr std::size_t kMaxSocketPath = sizeof(sockaddr_un{}.sun_path) - 1;

const char *const kExecOnly =
    "the agent runs exec hooks only: use {\"type\": \"exec\", \"command\": [...]}";

// "0600", "600" or "0640": three octal digits, optionally after a leading 0.
std::optional<unsigned> parse_mode(std::string_view text) {
    if (text.size() == 4 && text[0] == '0') text.remove_prefix(1);
    if (text.size() != 3) return std::nullopt;
    unsigned mode = 0;
    for (char c : text) {
        if (c < '0' || c > '7') return std::nullopt;
        mode = mode * 8 + static_cast<unsigned>(c - '0');
    }
    return mode;
}

bool is_usable_path(const std::string &path) {
    return !path.empty() && path[0] == '/' && path.back() != '/' &&
           path.find('\0') == std::string::npos;
}

// A hook given as {"type": "hook", ...} names a callback, which only a program that
// embeds the library can register.
void check_exec_hook(const json::value *hook, const JsonPath &path, JsonErrors &errors) {
    const json::object *o = hook != nullptr ? hook->if_object() : nullptr;
    if (o == nullptr) return;
    const json::value *type = o->if_contains("type");
    if (type != nullptr && type->is_string() && type->get_string() == "hook") {
        errors.add(JsonPath(path, "type"), kExecOnly);
    }
}

// The ids in "credentials" or "secrets", with the spec of each, as written.
void collect_specs(const json::object &top, std::string_view key,
                   std::map<std::string, json::value> &out) {
    const json::value *v = top.if_contains(key);
    const json::array *items = v != nullptr ? v->if_array() : nullptr;
    if (items == nullptr) return;
    for (const json::value &item : *items) {
        const json::object *o = item.if_object();
        const json::value *id = o != nullptr ? o->if_contains("id") : nullptr;
        if (id != nullptr && id->is_string()) out.emplace(std::string(id->get_string()), item);
    }
}

void check_hooks(const json::object &top, JsonErrors &errors) {
    const JsonPath root;
    if (const json::value *v = top.if_contains("credentials"); v && v->is_array()) {
        const JsonPath credentials(root, "credentials");
        const json::array &items = v->get_array();
        for (std::size_t i = 0; i < items.size(); ++i) {
            const json::object *o = items[i].if_object();
            if (o == nullptr) continue;
            const JsonPath item(credentials, i);
            check_exec_hook(o->if_contains("provider"), JsonPath(item, "provider"), errors);
        }
    }
    if (const json::value *v = top.if_contains("secrets"); v && v->is_array()) {
        const JsonPath secrets(root, "secrets");
        const json::array &items = v->get_array();
        for (std::size_t i = 0; i < items.size(); ++i) {
            const json::object *o = items[i].if_object();
            if (o == nullptr) continue;
            const JsonPath item(secrets, i);
            check_exec_hook(o->if_contains("hook"), JsonPath(item, "hook"), errors);
            const json::value *hooks = o->if_contains("hooks");
            if (hooks == nullptr || !hooks->is_object()) continue;
            const JsonPath hooks_path(item, "hooks");
            for (const auto &step : hooks->get_object()) {
                check_exec_hook(&step.value(), JsonPath(hooks_path, step.key()), errors);
            }
        }
    }
}

std::optional<SinkSpec> read_sink(const json::value &value, const JsonPath &path,
                                  const AgentConfig &config, JsonErrors &errors) {
    ObjectReader r(value, path, errors);
    if (!r.valid()) return std::nullopt;
    r.allow_only({"credential", "secret", "path", "label", "mode"});
    SinkSpec sink;
    bool ok = true;

    const bool by_credential = r.has("credential");
    const bool by_secret = r.has("secret");
    if (by_credential == by_secret) {
        errors.add(path, "expected exactly one of \"credential\" and \"secret\"");
        ok = false;
    } else if (by_credential) {
        sink.source = SinkSpec::Source::credential;
        if (auto id = r.string("credential")) {
            sink.id = *id;
            if (!config.credential_json.contains(*id)) {
                errors.add(JsonPath(path, "credential"),
                           "no credential \"" + *id + "\" in \"credentials\"");
                ok = false;
            }
        } else {
            ok = false;
        }
        if (r.has("label")) {
            errors.add(JsonPath(path, "label"), "only a secret's sink has a label");
            ok = false;
        }
    } else {
        sink.source = SinkSpec::Source::secret;
        if (auto id = r.string("secret")) {
            sink.id = *id;
            if (!config.secret_json.contains(*id)) {
                errors.add(JsonPath(path, "secret"), "no secret \"" + *id + "\" in \"secrets\"");
                ok = false;
            }
        } else {
            ok = false;
        }
        if (auto label = r.string("label")) {
            if (*label != "CURRENT" && *label != "PREVIOUS" && *label != "PENDING") {
                errors.add(JsonPath(path, "label"),
                           "expected \"CURRENT\", \"PREVIOUS\" or \"PENDING\"");
                ok = false;
            }
            sink.label = *label;
        } else if (r.has("label")) {
            ok = false;
        }
    }

    if (auto p = r.string("path", true); p && is_usable_path(*p)) {
        sink.path = *p;
    } else {
        if (p) errors.add(JsonPath(path, "path"), "expected an absolute path to a file");
        ok = false;
    }

    if (const json::value *m = r.raw("mode")) {
        const json::string *text = m->if_string();
        std::optional<unsigned> mode = text ? parse_mode(*text) : std::nullopt;
        if (!mode) {
            errors.add(JsonPath(path, "mode"), "expected an octal string like \"0600\"");
            ok = false;
        } else {
            sink.mode = *mode;
        }
    }
    if (!ok) return std::nullopt;
    return sink;
}

void read_agent_section(const json::value &value, AgentConfig &config, JsonErrors &errors) {
    const JsonPath root;
    const JsonPath path(root, "agent");
    ObjectReader r(value, path, errors);
    r.allow_only({"socket", "sinks", "log_level"});

    if (auto socket = r.string("socket")) {
        if (!is_usable_path(*socket)) {
            errors.add(JsonPath(path, "socket"), "expected an absolute path");
        } else if (socket->size() > kMaxSocketPath) {
            errors.add(JsonPath(path, "socket"),
                       "expected a path of at most " + std::to_string(kMaxSocketPath) + " bytes");
        } else {
            config.agent.socket = *socket;
        }
    }

    if (auto level = r.string("log_level")) {
        if (*level == "debug") {
            config.agent.log_level = LogLevel::debug;
        } else if (*level == "info") {
            config.agent.log_level = LogLevel::info;
        } else if (*level == "warning") {
            config.agent.log_level = LogLevel::warning;
        } else if (*level == "error") {
            config.agent.log_level = LogLevel::error;
        } else {
            errors.add(JsonPath(path, "log_level"),
                       "expected \"debug\", \"info\", \"warning\" or \"error\"");
        }
    }

    const json::value *sinks = r.raw("sinks");
    if (sinks == nullptr) return;
    const JsonPath sinks_path(path, "sinks");
    const json::array *items = sinks->if_array();
    if (items == nullptr) {
        errors.add(sinks_path, "expected an array of sinks");
        return;
    }
    std::map<std::string, std::size_t> by_path;
    for (std::size_t i = 0; i < items->size(); ++i) {
        const JsonPath item(sinks_path, i);
        auto sink = read_sink((*items)[i], item, config, errors);
        if (!sink) continue;
        auto [it, fresh] = by_path.emplace(sink->path, i);
        if (!fresh) {
            errors.add(JsonPath(item, "path"),
                       "also the path of agent.sinks[" + std::to_string(it->second) + "]");
            continue;
        }
        config.agent.sinks.push_back(std::move(*sink));
    }
}

// The engine reports its mistakes as "configuration: first\nsecond..."; this gives
// them one per line, without the prefix.
void split_engine_errors(const std::string &message, std::vector<std::string> &out) {
    std::string_view text = message;
    constexpr std::string_view prefix = "configuration: ";
    if (text.starts_with(prefix)) text.remove_prefix(prefix.size());
    while (!text.empty()) {
        const std::size_t end = text.find('\n');
        out.emplace_back(text.substr(0, end));
        if (end == std::string_view::npos) break;
        text.remove_prefix(end + 1);
    }
}

}  // namespace

std::optional<AgentConfig> parse_agent_config(std::string_view text,
                                              std::vector<std::string> &errors) {
    if (text.size() > kMaxConfigSize) {
        errors.push_back("the configuration is larger than " + std::to_string(kMaxConfigSize) +
                         " bytes");
        return std::nullopt;
    }
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = 64;
    json::value document = json::parse(text, ec, {}, options);
    if (ec) {
        errors.push_back("not valid JSON (" + ec.message() + ")");
        return std::nullopt;
    }
    json::object *top = document.if_object();
    if (top == nullptr) {
        errors.push_back("expected a JSON object");
        return std::nullopt;
    }

    AgentConfig config;
    JsonErrors mine;
    std::optional<json::value> agent_section;
    if (auto it = top->find("agent"); it != top->end()) {
        agent_section = std::move(it->value());
        top->erase(it);
    }
    collect_specs(*top, "credentials", config.credential_json);
    collect_specs(*top, "secrets", config.secret_json);
    check_hooks(*top, mine);
    if (agent_section) read_agent_section(*agent_section, config, mine);

    const std::size_t before = errors.size();
    try {
        config.engine = parse_engine_config(json::serialize(document));
    } catch (const Error &e) {
        split_engine_errors(e.what(), errors);
    }
    for (const std::string &line : mine.lines())
        errors.push_back(line);
    if (errors.size() != before) return std::nullopt;
    return config;
}

std::optional<AgentConfig> load_agent_config(const std::string &file,
                                             std::vector<std::string> &errors) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        errors.push_back("cannot read " + file + ": " + std::strerror(errno));
        return std::nullopt;
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        errors.push_back("cannot read " + file);
        return std::nullopt;
    }
    return parse_agent_config(text.str(), errors);
}

std::string default_socket_path() {
    const char *runtime = std::getenv("XDG_RUNTIME_DIR");
    if (runtime != nullptr && runtime[0] != '\0') return std::string(runtime) + "/keyturn.sock";
    return "/tmp/keyturn-" + std::to_string(::getuid()) + "/agent.sock";
}

void prepare_default_socket_directory(const std::string &socket_path) {
    const std::string dir = "/tmp/keyturn-" + std::to_string(::getuid());
    if (socket_path != dir + "/agent.sock") return;
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        throw std::runtime_error("cannot create " + dir + ": " + std::strerror(errno));
    }
    // /tmp is shared: the directory must be ours, a real directory and private.
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) {
        throw std::runtime_error("cannot inspect " + dir + ": " + std::strerror(errno));
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid()) {
        throw std::runtime_error(dir + " is not a directory owned by this user");
    }
    if ((st.st_mode & 077) != 0) {
        throw std::runtime_error(dir + " is open to other users (its mode must be 0700)");
    }
}

}  // namespace keyturn::agent
