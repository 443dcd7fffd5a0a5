#include "bindings/cli/agent.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "bindings/cli/agent_config.hpp"
#include "bindings/cli/control_protocol.hpp"
#include "bindings/cli/sink_file.hpp"
#include "core/engine.hpp"
#include "core/secret.hpp"
#include "core/status.hpp"

namespace keyturn::agent {

namespace asio = boost::asio;
using stream_protocol = asio::local::stream_protocol;

namespace {

// A client that has not sent its request and read its answer by then is dropped.
constexpr auto kSessionTimeout = std::chrono::seconds(10);

// One line per message on stderr: time, level, message. Called from engine threads
// and from the agent's own thread.
class StderrLog {
  public:
    explicit StderrLog(LogLevel min) : min_(min) {}

    void set_level(LogLevel min) {
        std::lock_guard lock(mutex_);
        min_ = min;
    }

    void write(LogLevel level, std::string_view text) {
        // One line per message, whatever the message holds.
        std::string message(text);
        std::replace_if(
            message.begin(), message.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
        std::lock_guard lock(mutex_);
        if (static_cast<int>(level) < static_cast<int>(min_)) return;
        const auto now = std::chrono::system_clock::now();
        const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
        const auto millis =
            std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
            1000;
        std::tm utc{};
        ::gmtime_r(&seconds, &utc);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
        std::fprintf(stderr, "%s.%03dZ %-7s %.*s\n", stamp, static_cast<int>(millis),
                     log_level_name(level), static_cast<int>(message.size()), message.data());
        std::fflush(stderr);
    }

  private:
    std::mutex mutex_;
    LogLevel min_;
};

// The agent's answer to one connection on the control socket: read one line, answer
// it, close. A deadline bounds the whole exchange.
class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(stream_protocol::socket socket, Engine &engine)
        : socket_(std::move(socket)), timer_(socket_.get_executor()), engine_(engine) {}

    void start() {
        timer_.expires_after(kSessionTimeout);
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code &ec) {
            // operation_aborted: the exchange finished first and cancelled the timer.
            if (ec != asio::error::operation_aborted) self->close();
        });
        do_read();
    }

  private:
    void do_read() {
        asio::async_read_until(
            socket_, asio::dynamic_buffer(request_, kMaxRequestSize + 1), '\n',
            [self = shared_from_this()](const boost::system::error_code &ec, std::size_t n) {
                self->on_read(ec, n);
            });
    }

    void on_read(const boost::system::error_code &ec, std::size_t n) {
        if (ec == asio::error::not_found) {
            // The buffer filled up without a newline.
            do_write(failure_answer("bad_request", "the request is longer than " +
                                                       std::to_string(kMaxRequestSize) + " bytes"));
            return;
        }
        if (ec == asio::error::eof && !request_.empty()) {
            // A client that ends its request by closing its side is answered too.
            do_write(answer_request(engine_, request_));
            return;
        }
        if (ec) {
            close();
            return;
        }
        do_write(answer_request(engine_, std::string_view(request_).substr(0, n - 1)));
    }

    void do_write(std::string answer) {
        answer_ = std::move(answer);
        answer_ += '\n';
        asio::async_write(socket_, asio::buffer(answer_),
                          [self = shared_from_this()](const boost::system::error_code &,
                                                      std::size_t) { self->close(); });
    }

    void close() {
        boost::system::error_code ignored;
        timer_.cancel();
        socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

    stream_protocol::socket socket_;
    asio::steady_timer timer_;
    Engine &engine_;
    std::string request_;
    std::string answer_;
};

class AgentError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

const char *signal_name(int signo) {
    switch (signo) {
        case SIGHUP:
            return "SIGHUP";
        case SIGTERM:
            return "SIGTERM";
        case SIGINT:
            return "SIGINT";
        default:
            return "a signal";
    }
}

template <class Spec>
const Spec *find_spec(const std::vector<Spec> &specs, const std::string &id) {
    for (const Spec &s : specs) {
        if (s.id == id) return &s;
    }
    return nullptr;
}

// What a reload changes in one kind of spec: ids to remove (gone or changed) and ids
// to add (new or changed).
struct Difference {
    std::vector<std::string> remove;
    std::vector<std::string> add;
    std::size_t added = 0, removed = 0, changed = 0;
};

Difference difference(const std::map<std::string, boost::json::value> &before,
                      const std::map<std::string, boost::json::value> &after) {
    Difference d;
    for (const auto &[id, spec] : before) {
        auto it = after.find(id);
        if (it == after.end()) {
            d.remove.push_back(id);
            ++d.removed;
        } else if (it->second != spec) {
            d.remove.push_back(id);
            d.add.push_back(id);
            ++d.changed;
        }
    }
    for (const auto &[id, spec] : after) {
        if (!before.contains(id)) {
            d.add.push_back(id);
            ++d.added;
        }
    }
    return d;
}

class Agent {
  public:
    Agent(std::string config_file, AgentConfig config, std::string socket_path,
          bool socket_from_command_line)
        : log_(std::make_shared<StderrLog>(config.agent.log_level)),
          config_file_(std::move(config_file)),
          socket_path_(std::move(socket_path)),
          socket_from_command_line_(socket_from_command_line),
          config_(std::move(config)) {}

    ~Agent() {
        // Normally done on the way out of run(); here for the paths that throw.
        if (engine_) {
            try {
                engine_->stop();
            } catch (...) {
            }
        }
        remove_socket();
    }

    int run() {
        signals_.add(SIGHUP);
        signals_.add(SIGTERM);
        signals_.add(SIGINT);

        try {
            open_socket();
        } catch (const std::exception &e) {
            log_->write(LogLevel::error, e.what());
            return 1;
        }
        try {
            start_engine();
        } catch (const std::exception &e) {
            log_->write(LogLevel::error, std::string("cannot start: ") + e.what());
            return 1;
        }
        log_->write(LogLevel::info, "agent " + std::to_string(::getpid()) + " listening on " +
                                        socket_path_ + " with " + describe_counts(config_));
        sync_sinks([](const SinkSpec &) { return true; });

        do_accept();
        wait_for_signal();
        io_.run();
        return 0;
    }

  private:
    // --- the control socket ---------------------------------------------------

    void open_socket() {
        struct stat st {};
        if (::lstat(socket_path_.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                throw AgentError(socket_path_ + " exists and is not a socket; not replacing it");
            }
            if (someone_listens()) {
                throw AgentError("another agent is listening on " + socket_path_ +
                                 "; not starting a second one");
            }
            // Left behind by an agent that was killed: nobody listens on it.
            // Limitation: two agents started at the same instant can both find it stale;
            // a lock file beside the socket, held with flock() for the agent's life,
            // would close that window.
            if (::unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
                throw AgentError("cannot remove the stale socket " + socket_path_ + ": " +
                                 std::strerror(errno));
            }
            log_->write(LogLevel::info, "removed the stale socket " + socket_path_);
        }

        acceptor_.open(stream_protocol());
        // The socket is created 0600 (umask 0177 while binding): no moment exists in
        // which another user could connect. The umask is restored at once; no other
        // thread runs yet.
        const mode_t old_mask = ::umask(0177);
        boost::system::error_code ec;
        acceptor_.bind(stream_protocol::endpoint(socket_path_), ec);
        ::umask(old_mask);
        if (ec) throw AgentError("cannot bind " + socket_path_ + ": " + ec.message());
        if (::lstat(socket_path_.c_str(), &st) == 0) {
            socket_identity_ = {st.st_dev, st.st_ino};
        }
        acceptor_.listen(asio::socket_base::max_listen_connections, ec);
        if (ec) throw AgentError("cannot listen on " + socket_path_ + ": " + ec.message());
    }

    bool someone_listens() const {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw AgentError(std::string("cannot create a socket: ") + std::strerror(errno));
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::memcpy(address.sun_path, socket_path_.c_str(), socket_path_.size() + 1);
        const int rc = ::connect(fd, reinterpret_cast<const sockaddr *>(&address), sizeof address);
        const int err = errno;
        ::close(fd);
        if (rc == 0) return true;
        if (err == ECONNREFUSED || err == ENOENT) return false;
        throw AgentError("cannot tell whether an agent listens on " + socket_path_ + ": " +
                         std::strerror(err));
    }

    // Removes the socket file only if it is still the one this agent bound: a new
    // agent may have replaced it.
    void remove_socket() {
        if (!socket_identity_) return;
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        struct stat st {};
        if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == socket_identity_->first &&
            st.st_ino == socket_identity_->second) {
            ::unlink(socket_path_.c_str());
        }
        socket_identity_.reset();
    }

    void do_accept() {
        acceptor_.async_accept(
            [this](const boost::system::error_code &ec, stream_protocol::socket socket) {
                on_accept(ec, std::move(socket));
            });
    }

    void on_accept(const boost::system::error_code &ec, stream_protocol::socket socket) {
        // operation_aborted: the acceptor was closed because the agent is stopping.
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (ec) {
            log_->write(LogLevel::warning, "control socket: accept failed: " + ec.message());
        } else if (peer_allowed(socket)) {
            std::make_shared<Session>(std::move(socket), *engine_)->start();
        }
        do_accept();
    }

    // The socket's mode already keeps other users out; the peer's uid is checked as
    // well, so that a socket made reachable by mistake still answers only its owner.
    bool peer_allowed(stream_protocol::socket &socket) {
        ucred peer{};
        socklen_t len = sizeof peer;
        if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
            log_->write(LogLevel::warning, std::string("control socket: cannot identify a "
                                                       "client: ") +
                                               std::strerror(errno));
            return false;
        }
        if (peer.uid != ::geteuid()) {
            log_->write(LogLevel::warning, "control socket: refused a client with uid " +
                                               std::to_string(peer.uid) + " (pid " +
                                               std::to_string(peer.pid) + ")");
            return false;
        }
        return true;
    }

    // --- signals --------------------------------------------------------------

    void wait_for_signal() {
        signals_.async_wait([this](const boost::system::error_code &ec, int signo) {
            if (ec) return;
            if (signo == SIGHUP) {
                log_->write(LogLevel::info, "SIGHUP: reading " + config_file_ + " again");
                reload();
                wait_for_signal();
                return;
            }
            log_->write(LogLevel::info, std::string(signal_name(signo)) + ": stopping");
            shut_down();
        });
    }

    void shut_down() {
        // The socket stays bound while the engine drains, so that an agent started
        // meanwhile finds this one listening and does not start beside it.
        try {
            engine_->stop();
        } catch (const std::exception &e) {
            log_->write(LogLevel::error, std::string("stopping the engine: ") + e.what());
        }
        // Values that arrived while draining.
        sync_sinks([](const SinkSpec &) { return true; });
        remove_socket();
        signals_.cancel();
        log_->write(LogLevel::info, "agent stopped");
        io_.stop();
    }

    // --- the engine -----------------------------------------------------------

    static std::string describe_counts(const AgentConfig &config) {
        return std::to_string(config.engine.credentials.size()) + " credential(s), " +
               std::to_string(config.engine.secrets.size()) + " secret(s) and " +
               std::to_string(config.agent.sinks.size()) + " sink(s)";
    }

    void start_engine() {
        engine_ = std::make_unique<Engine>(config_.engine.engine);
        install_logger(config_.agent.log_level);
        // Events reach the log through the logger; the subscription only tells the
        // agent's thread which sinks may need writing.
        engine_->subscribe([this](const Event &e) { on_event(e); });
        for (const CredentialSpec &spec : config_.engine.credentials)
            engine_->add(spec);
        for (const SecretSpec &spec : config_.engine.secrets)
            engine_->add_secret(spec);
        engine_->start();
    }

    void install_logger(LogLevel level) {
        log_->set_level(level);
        engine_->set_logger(
            level, [log = log_](LogLevel at, const std::string &line) { log->write(at, line); });
    }

    // On an engine thread: hand the work to the agent's thread.
    void on_event(const Event &e) {
        const bool secret_changed =
            e.secret && (e.type == EventType::rotated || e.type == EventType::rotation_step ||
                         e.type == EventType::rotation_abandoned);
        if (!(secret_changed || (!e.secret && e.type == EventType::refreshed))) return;
        asio::post(io_, [this, id = e.credential, secret = e.secret] {
            const auto source = secret ? SinkSpec::Source::secret : SinkSpec::Source::credential;
            sync_sinks([&](const SinkSpec &s) { return s.source == source && s.id == id; });
        });
    }

    // --- sinks ----------------------------------------------------------------

    // Writes every sink `which` selects whose value (or spec) differs from what was
    // last written there.
    void sync_sinks(const std::function<bool(const SinkSpec &)> &which) {
        for (const SinkSpec &sink : config_.agent.sinks) {
            if (!which(sink)) continue;
            try {
                sync_sink(sink);
            } catch (const std::exception &e) {
                log_->write(LogLevel::error, e.what());
            }
        }
    }

    void sync_sink(const SinkSpec &sink) {
        ScrubbedString value;
        std::string version;
        if (sink.source == SinkSpec::Source::credential) {
            if (!read_credential(sink.id, value)) return;
        } else {
            try {
                SecretBytes bytes = engine_->read_secret(sink.id, sink.label, &version);
                value.str().assign(bytes.reveal());
            } catch (const Error &e) {
                // No version holds that label (yet): the file keeps what it has.
                if (e.status() == Status::not_ready) return;
                throw;
            }
        }

        const std::string fingerprint = fingerprint_of(value.str());
        auto it = written_.find(sink.path);
        if (it != written_.end() && it->second.spec == sink &&
            it->second.fingerprint == fingerprint) {
            return;
        }
        write_sink_file(sink.path, value.str(), sink.mode);
        written_[sink.path] = Written{sink, fingerprint};
        log_->write(LogLevel::info, "sink " + sink.path + ": wrote " + sink.describe() +
                                        (version.empty() ? "" : " version " + version) + " (" +
                                        fingerprint + ")");
    }

    // False when the credential has no value to write.
    bool read_credential(const std::string &id, ScrubbedString &out) {
        std::shared_ptr<const Credential> credential = engine_->find(id);
        std::string &buffer = out.str();
        buffer.resize(4096);
        for (;;) {
            std::size_t len = 0;
            bool stale = false;
            const Status status = credential->read(buffer.data(), buffer.size(), &len, &stale);
            if (status == Status::ok) {
                buffer.resize(len);
                return true;
            }
            if (status == Status::buffer_too_small) {
                // The value may change between the two reads; the loop then asks again.
                cleanse(buffer);
                buffer.resize(len);
                continue;
            }
            if (status == Status::expired) {
                log_->write(LogLevel::warning,
                            "credential \"" + id + "\": expired; its sinks keep their last value");
            }
            return false;
        }
    }

    // --- reload ---------------------------------------------------------------

    void reload() {
        std::vector<std::string> errors;
        std::optional<AgentConfig> next = load_agent_config(config_file_, errors);
        if (!next) {
            log_->write(LogLevel::error, "reload: " + config_file_ + " is not valid (" +
                                             std::to_string(errors.size()) +
                                             " error(s)); the running configuration stays");
            for (const std::string &line : errors)
                log_->write(LogLevel::error, "reload: " + config_file_ + ": " + line);
            return;
        }
        if (!apply(*next)) return;

        const EngineSettings &a = config_.engine.engine, &b = next->engine.engine;
        if (a.threads != b.threads || a.hook_timeout != b.hook_timeout ||
            a.drain_timeout != b.drain_timeout) {
            log_->write(LogLevel::warning,
                        "reload: the \"engine\" settings changed; they apply when the agent "
                        "starts again");
        }
        if (!socket_from_command_line_ && !next->agent.socket.empty() &&
            next->agent.socket != socket_path_) {
            log_->write(LogLevel::warning,
                        "reload: agent.socket changed; the agent keeps listening on " +
                            socket_path_ + " until it starts again");
        }
        if (next->agent.log_level != config_.agent.log_level) install_logger(next->agent.log_level);

        config_ = std::move(*next);
        // Forget sinks no longer configured; their files stay as they are.
        for (auto it = written_.begin(); it != written_.end();) {
            const bool kept = std::any_of(config_.agent.sinks.begin(), config_.agent.sinks.end(),
                                          [&](const SinkSpec &s) { return s.path == it->first; });
            it = kept ? std::next(it) : written_.erase(it);
        }
        sync_sinks([](const SinkSpec &) { return true; });
    }

    // Applies the credentials and secrets of `next`: removes what is gone or changed,
    // then adds what is new or changed. A step that fails (a store that cannot be
    // read, a missing seed file) undoes every step before it, so that the engine runs
    // the old configuration again. Returns whether `next` was applied.
    bool apply(const AgentConfig &next) {
        const Difference credentials = difference(config_.credential_json, next.credential_json);
        const Difference secrets = difference(config_.secret_json, next.secret_json);
        std::vector<std::function<void()>> undo;
        std::string step;
        try {
            for (const std::string &id : credentials.remove) {
                step = "removing credential \"" + id + "\"";
                engine_->remove(id);
                const CredentialSpec old = *find_spec(config_.engine.credentials, id);
                undo.push_back([this, old] { engine_->add(old); });
            }
            for (const std::string &id : secrets.remove) {
                step = "removing secret \"" + id + "\"";
                engine_->remove_secret(id);
                const SecretSpec old = *find_spec(config_.engine.secrets, id);
                undo.push_back([this, old] { engine_->add_secret(old); });
            }
            for (const std::string &id : credentials.add) {
                step = "adding credential \"" + id + "\"";
                engine_->add(*find_spec(next.engine.credentials, id));
                undo.push_back([this, id] { engine_->remove(id); });
            }
            for (const std::string &id : secrets.add) {
                step = "adding secret \"" + id + "\"";
                engine_->add_secret(*find_spec(next.engine.secrets, id));
                undo.push_back([this, id] { engine_->remove_secret(id); });
            }
        } catch (const std::exception &e) {
            log_->write(LogLevel::error, "reload: " + step + " failed: " + e.what() +
                                             "; going back to the running configuration");
            for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
                try {
                    (*it)();
                } catch (const std::exception &again) {
                    log_->write(LogLevel::error,
                                std::string("reload: could not undo a step: ") + again.what());
                }
            }
            return false;
        }
        log_->write(LogLevel::info,
                    "reload: applied; credentials: " + std::to_string(credentials.added) +
                        " added, " + std::to_string(credentials.removed) + " removed, " +
                        std::to_string(credentials.changed) +
                        " changed; secrets: " + std::to_string(secrets.added) + " added, " +
                        std::to_string(secrets.removed) + " removed, " +
                        std::to_string(secrets.changed) + " changed");
        return true;
    }

    struct Written {
        SinkSpec spec;
        std::string fingerprint;
    };

    // Declared first: destroyed last, after the engine whose subscriber posts to it.
    asio::io_context io_;
    asio::signal_set signals_{io_};
    stream_protocol::acceptor acceptor_{io_};
    std::shared_ptr<StderrLog> log_;
    const std::string config_file_;
    const std::string socket_path_;
    const bool socket_from_command_line_;
    AgentConfig config_;
    std::optional<std::pair<dev_t, ino_t>> socket_identity_;
    std::map<std::string, Written> written_;
    std::unique_ptr<Engine> engine_;
};

}  // namespace

int run_agent(const RunOptions &options) {
    std::vector<std::string> errors;
    std::optional<AgentConfig> config = load_agent_config(options.config_file, errors);
    if (!config) {
        for (const std::string &line : errors)
            std::fprintf(stderr, "keyturn: %s: %s\n", options.config_file.c_str(), line.c_str());
        return 3;
    }

    std::string socket_path = options.socket;
    if (socket_path.empty()) socket_path = config->agent.socket;
    if (socket_path.empty()) {
        socket_path = default_socket_path();
        try {
            prepare_default_socket_directory(socket_path);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "keyturn: %s\n", e.what());
            return 1;
        }
    }
    if (socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
        std::fprintf(stderr, "keyturn: the socket path %s is too long\n", socket_path.c_str());
        return 2;
    }

    // A client that goes away mid-answer must not end the agent.
    ::signal(SIGPIPE, SIG_IGN);
    Agent agent(options.config_file, std::move(*config), socket_path, !options.socket.empty());
    return agent.run();
}

}  // namespace keyturn::agent
