// The C boundary: every entry point converts its arguments, calls the engine, and
// turns every failure — exceptions, allocation failure included — into a status and
// a per-thread message. Nothing unwinds past this file.

#define KEYTURN_BUILDING_LIBRARY 1
#include "capi/keyturn.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "core/engine.hpp"
#include "core/hook_provider.hpp"
#include "core/json_support.hpp"
#include "core/secret.hpp"
#include "core/spec.hpp"
#include "core/step_hook.hpp"

using keyturn::Error;
using keyturn::Status;

static_assert(KEYTURN_E_INVALID_ARGUMENT == static_cast<int>(Status::invalid_argument));
static_assert(KEYTURN_E_CONFIG == static_cast<int>(Status::config));
static_assert(KEYTURN_E_NOT_FOUND == static_cast<int>(Status::not_found));
static_assert(KEYTURN_E_EXISTS == static_cast<int>(Status::exists));
static_assert(KEYTURN_E_STATE == static_cast<int>(Status::state));
static_assert(KEYTURN_E_NOT_READY == static_cast<int>(Status::not_ready));
static_assert(KEYTURN_E_EXPIRED == static_cast<int>(Status::expired));
static_assert(KEYTURN_E_BUFFER_TOO_SMALL == static_cast<int>(Status::buffer_too_small));
static_assert(KEYTURN_E_STALE_COMPLETION == static_cast<int>(Status::stale_completion));
static_assert(KEYTURN_E_STORE == static_cast<int>(Status::store));
static_assert(KEYTURN_E_NO_MEMORY == static_cast<int>(Status::no_memory));
static_assert(KEYTURN_E_REMOVED == static_cast<int>(Status::removed));
static_assert(KEYTURN_E_INTERNAL == static_cast<int>(Status::internal));

struct keyturn_engine {
    keyturn::Engine engine;
    explicit keyturn_engine(const keyturn::EngineSettings &settings) : engine(settings) {}
};

struct keyturn_credential {
    std::shared_ptr<const keyturn::Credential> credential;
};

namespace {

thread_local std::string t_last_error;

int set_error(int status, std::string message) noexcept {
    try {
        t_last_error = std::move(message);
    } catch (...) {
        t_last_error.clear();
    }
    return status;
}

int set_error(Status status, std::string message) noexcept {
    return set_error(static_cast<int>(status), std::move(message));
}

// Runs `body`, which returns a status; converts every exception into one.
template <class Body>
int guarded(Body &&body) noexcept {
    try {
        t_last_error.clear();
        return static_cast<int>(body());
    } catch (const Error &e) {
        return set_error(e.status(), e.what());
    } catch (const std::bad_alloc &) {
        return set_error(Status::no_memory, "out of memory");
    } catch (const std::exception &e) {
        return set_error(Status::internal, std::string("internal error: ") + e.what());
    } catch (...) {
        return set_error(Status::internal, "internal error: unknown exception");
    }
}

Error invalid(const std::string &message) {
    return Error(Status::invalid_argument, message);
}

void require(const void *p, const char *name) {
    if (p == nullptr) throw invalid(std::string(name) + " is NULL");
}

// Checks an identifier argument; the message never repeats an overlong value.
std::string_view identifier(const char *text, const char *what) {
    require(text, what);
    std::string_view id(text, ::strnlen(text, keyturn::kMaxIdLength + 1));
    if (auto why = keyturn::check_identifier(id)) {
        if (id.size() > keyturn::kMaxIdLength) {
            throw invalid(std::string(what) + " is longer than " +
                          std::to_string(keyturn::kMaxIdLength) + " bytes");
        }
        throw invalid(std::string(what) + " " + *why);
    }
    return id;
}

std::string_view text_arg(const char *text, std::size_t len, const char *what) {
    if (text == nullptr) throw invalid(std::string(what) + " is NULL");
    return {text, len};
}

// Owns a callback's user_data and calls its release function exactly once.
struct UserData {
    void *data;
    keyturn_release_fn release;
    UserData(void *d, keyturn_release_fn r) : data(d), release(r) {}
    ~UserData() {
        if (release != nullptr) release(data);
    }
    UserData(const UserData &) = delete;
    UserData &operator=(const UserData &) = delete;
};

// The user_data is the caller's until registration has succeeded; this holder
// releases nothing if dropped before then.
std::shared_ptr<UserData> adopt_later(void *data) {
    return std::make_shared<UserData>(data, nullptr);
}

char *copy_out(const std::string &text) {
    char *out = static_cast<char *>(std::malloc(text.size() + 1));
    if (out == nullptr) throw std::bad_alloc();
    std::memcpy(out, text.data(), text.size() + 1);
    return out;
}

keyturn::LogLevel to_level(int level) {
    if (level <= KEYTURN_LOG_DEBUG) return keyturn::LogLevel::debug;
    if (level <= KEYTURN_LOG_INFO) return keyturn::LogLevel::info;
    if (level <= KEYTURN_LOG_WARNING) return keyturn::LogLevel::warning;
    return keyturn::LogLevel::error;
}

// Delivers `outcome` for `completion`; a stale completion wins over `status`.
template <class Outcome>
int finish(keyturn_completion completion, Outcome outcome, Status status,
           const std::string &message) {
    Status delivered = keyturn::completions::complete(completion, std::move(outcome));
    if (delivered == Status::stale_completion) {
        throw Error(Status::stale_completion,
                    "completion " + std::to_string(completion) +
                        " is unknown, was already used, timed out, or its engine is gone");
    }
    if (status != Status::ok) throw Error(status, message);
    if (delivered == Status::store) {
        throw Error(Status::store, "the new value could not be persisted; it is held in memory");
    }
    if (delivered == Status::config) {
        throw Error(Status::config, "the result does not fit the step; the step failed");
    }
    return static_cast<int>(delivered);
}

bool is_step(keyturn_completion completion) {
    return keyturn::completions::kind_of(completion) == keyturn::CompletionKind::step;
}

}  // namespace

extern "C" {

int keyturn_version_number(void) {
    return KEYTURN_VERSION_NUMBER;
}
const char *keyturn_version_string(void) {
    return KEYTURN_VERSION_STRING;
}
int keyturn_abi_version(void) {
    return KEYTURN_ABI_VERSION;
}

const char *keyturn_last_error(void) {
    return t_last_error.c_str();
}

const char *keyturn_status_name(int status) {
    switch (status) {
        case KEYTURN_OK:
            return "KEYTURN_OK";
        case KEYTURN_E_INVALID_ARGUMENT:
            return "KEYTURN_E_INVALID_ARGUMENT";
        case KEYTURN_E_CONFIG:
            return "KEYTURN_E_CONFIG";
        case KEYTURN_E_NOT_FOUND:
            return "KEYTURN_E_NOT_FOUND";
        case KEYTURN_E_EXISTS:
            return "KEYTURN_E_EXISTS";
        case KEYTURN_E_STATE:
            return "KEYTURN_E_STATE";
        case KEYTURN_E_NOT_READY:
            return "KEYTURN_E_NOT_READY";
        case KEYTURN_E_EXPIRED:
            return "KEYTURN_E_EXPIRED";
        case KEYTURN_E_BUFFER_TOO_SMALL:
            return "KEYTURN_E_BUFFER_TOO_SMALL";
        case KEYTURN_E_STALE_COMPLETION:
            return "KEYTURN_E_STALE_COMPLETION";
        case KEYTURN_E_STORE:
            return "KEYTURN_E_STORE";
        case KEYTURN_E_NO_MEMORY:
            return "KEYTURN_E_NO_MEMORY";
        case KEYTURN_E_REMOVED:
            return "KEYTURN_E_REMOVED";
        case KEYTURN_E_INTERNAL:
            return "KEYTURN_E_INTERNAL";
        default:
            return "KEYTURN_UNKNOWN";
    }
}

void keyturn_string_free(char *str) {
    if (str == nullptr) return;
    keyturn::cleanse(str, std::strlen(str));
    std::free(str);
}

int keyturn_engine_new(keyturn_engine **out, const char *config, size_t len) {
    return guarded([&] {
        require(out, "out");
        std::string_view text = text_arg(config, len, "config");
        std::unique_ptr<keyturn_engine> engine;
        keyturn::load_engine_config(
            text,
            [&](const keyturn::EngineSettings &settings, std::size_t count) {
                engine = std::make_unique<keyturn_engine>(settings);
                engine->engine.reserve(count);
            },
            [&](keyturn::CredentialSpec &&spec) { engine->engine.add(std::move(spec)); },
            [&](keyturn::SecretSpec &&spec) { engine->engine.add_secret(std::move(spec)); });
        *out = engine.release();
        return Status::ok;
    });
}

int keyturn_engine_start(keyturn_engine *engine) {
    return guarded([&] {
        require(engine, "engine");
        engine->engine.start();
        return Status::ok;
    });
}

int keyturn_engine_stop(keyturn_engine *engine, int drain_ms) {
    return guarded([&] {
        require(engine, "engine");
        std::optional<keyturn::Duration> drain;
        if (drain_ms >= 0) drain = std::chrono::milliseconds(drain_ms);
        engine->engine.stop(drain);
        return Status::ok;
    });
}

void keyturn_engine_free(keyturn_engine *engine) {
    if (engine == nullptr) return;
    if (engine->engine.on_engine_thread()) {
        set_error(Status::state,
                  "keyturn_engine_free() was called from a keyturn callback; "
                  "the engine was not freed");
        return;
    }
    try {
        delete engine;
    } catch (...) {
        set_error(Status::internal, "internal error while freeing the engine");
    }
}

int keyturn_hook_register(keyturn_engine *engine, const char *name, keyturn_refresh_hook hook,
                          void *user_data, keyturn_release_fn release) {
    return guarded([&] {
        require(engine, "engine");
        std::string_view hook_name = identifier(name, "hook name");
        require(reinterpret_cast<const void *>(hook), "hook");
        auto owner = adopt_later(user_data);
        auto provider = std::make_shared<keyturn::HookProvider>(
            [hook, owner](std::string_view request, std::uint64_t token) {
                return hook(request.data(), request.size(), token, owner->data);
            });
        engine->engine.add_provider(std::string(hook_name), std::move(provider));
        owner->release = release;
        return Status::ok;
    });
}

int keyturn_complete(keyturn_completion completion, const char *result_json, size_t len) {
    return guarded([&] {
        std::string_view text = text_arg(result_json, len, "result_json");
        if (is_step(completion)) {
            keyturn::StepOutcome step;
            try {
                step = keyturn::parse_step_result(text, std::nullopt);
            } catch (const Error &e) {
                std::string why = std::string("the hook returned a malformed result: ") + e.what();
                return finish(completion, keyturn::StepOutcome(keyturn::StepFailure{why, {}}),
                              Status::config, e.what());
            }
            return finish(completion, std::move(step), Status::ok, {});
        }
        keyturn::RefreshOutcome outcome;
        try {
            outcome = keyturn::parse_hook_result(text);
        } catch (const Error &e) {
            // A malformed result fails the refresh, which is then retried.
            std::string why = std::string("the hook returned a malformed result: ") + e.what();
            return finish(completion,
                          keyturn::RefreshFailure{why, keyturn::FailureAction::retry, std::nullopt},
                          Status::config, e.what());
        }
        return finish(completion, std::move(outcome), Status::ok, {});
    });
}

int keyturn_complete_value(keyturn_completion completion, const void *value, size_t len,
                           double expires_in) {
    return guarded([&] {
        if (value == nullptr && len != 0) throw invalid("value is NULL");
        std::string problem;
        if (len > keyturn::kMaxValueSize) {
            problem = "the value is " + std::to_string(len) + " bytes; at most " +
                      std::to_string(keyturn::kMaxValueSize) + " are allowed";
        } else if (!std::isfinite(expires_in) || expires_in < 0 || expires_in > 3.2e9) {
            problem = "expires_in must be a number of seconds from 0 up";
        }
        if (is_step(completion)) {
            if (len == 0) problem = "the value is empty";
            if (!problem.empty()) {
                return finish(completion,
                              keyturn::StepOutcome(keyturn::StepFailure{
                                  "the hook returned an unusable value: " + problem, {}}),
                              Status::invalid_argument, problem);
            }
            return finish(
                completion,
                keyturn::StepOutcome(keyturn::StepSuccess{keyturn::SecretBytes(value, len)}),
                Status::ok, {});
        }
        if (!problem.empty()) {
            return finish(completion,
                          keyturn::RefreshFailure{"the hook returned an unusable value: " + problem,
                                                  keyturn::FailureAction::retry, std::nullopt},
                          Status::invalid_argument, problem);
        }
        keyturn::RefreshSuccess success;
        success.value = keyturn::SecretBytes(value, len);
        success.expires_in = keyturn::seconds_to_duration(expires_in);
        return finish(completion, std::move(success), Status::ok, {});
    });
}

int keyturn_complete_error(keyturn_completion completion, int action, const char *message,
                           double retry_after) {
    return guarded([&] {
        keyturn::RefreshFailure failure;
        switch (action) {
            case KEYTURN_ACTION_RETRY:
                failure.action = keyturn::FailureAction::retry;
                break;
            case KEYTURN_ACTION_LOGIN:
                failure.action = keyturn::FailureAction::login;
                break;
            case KEYTURN_ACTION_GIVE_UP:
                failure.action = keyturn::FailureAction::give_up;
                break;
            default:
                throw invalid("action " + std::to_string(action) + " is not a KEYTURN_ACTION_*");
        }
        if (!std::isfinite(retry_after) || retry_after < 0 || retry_after > 86400) {
            throw invalid("retry_after must be a number of seconds from 0 to 86400");
        }
        if (retry_after > 0) failure.retry_after = keyturn::seconds_to_duration(retry_after);
        failure.reason = message != nullptr ? std::string(message, ::strnlen(message, 4096))
                                            : "the hook reported a failure";
        if (is_step(completion)) {
            return finish(completion,
                          keyturn::StepOutcome(
                              keyturn::StepFailure{std::move(failure.reason), failure.retry_after}),
                          Status::ok, {});
        }
        return finish(completion, std::move(failure), Status::ok, {});
    });
}

int keyturn_credential_add(keyturn_engine *engine, const char *spec, size_t len) {
    return guarded([&] {
        require(engine, "engine");
        std::string_view text = text_arg(spec, len, "spec");
        engine->engine.add(keyturn::parse_credential_spec(text));
        return Status::ok;
    });
}

int keyturn_credential_remove(keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(engine, "engine");
        engine->engine.remove(identifier(id, "credential id"));
        return Status::ok;
    });
}

int keyturn_credential_refresh(keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(engine, "engine");
        engine->engine.refresh_now(identifier(id, "credential id"));
        return Status::ok;
    });
}

int keyturn_credential_status(char **out, keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(out, "out");
        require(engine, "engine");
        *out = copy_out(engine->engine.status_json(identifier(id, "credential id")));
        return Status::ok;
    });
}

int keyturn_engine_status(char **out, keyturn_engine *engine) {
    return guarded([&] {
        require(out, "out");
        require(engine, "engine");
        *out = copy_out(engine->engine.status_json());
        return Status::ok;
    });
}

int keyturn_secret_add(keyturn_engine *engine, const char *spec, size_t len) {
    return guarded([&] {
        require(engine, "engine");
        std::string_view text = text_arg(spec, len, "spec");
        engine->engine.add_secret(keyturn::parse_secret_spec(text));
        return Status::ok;
    });
}

int keyturn_secret_remove(keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(engine, "engine");
        engine->engine.remove_secret(identifier(id, "secret id"));
        return Status::ok;
    });
}

int keyturn_secret_rotate(char **out_version, keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(engine, "engine");
        std::string version = engine->engine.rotate_now(identifier(id, "secret id"));
        if (out_version != nullptr) *out_version = copy_out(version);
        return Status::ok;
    });
}

int keyturn_secret_seed(keyturn_engine *engine, const char *id, const void *value, size_t len) {
    return guarded([&] {
        require(engine, "engine");
        std::string_view secret_id = identifier(id, "secret id");
        require(value, "value");
        if (len == 0 || len > keyturn::kMaxValueSize) {
            throw invalid("the value is " + std::to_string(len) + " bytes; 1 to " +
                          std::to_string(keyturn::kMaxValueSize) + " are allowed");
        }
        engine->engine.seed_secret(secret_id, keyturn::SecretBytes(value, len));
        return Status::ok;
    });
}

int keyturn_secret_read(keyturn_engine *engine, const char *id, const char *label, void *buf,
                        size_t cap, size_t *out_len) {
    return guarded([&] {
        require(engine, "engine");
        std::string_view secret_id = identifier(id, "secret id");
        require(out_len, "out_len");
        if (buf == nullptr && cap != 0) throw invalid("buf is NULL");
        std::string_view which = label != nullptr ? std::string_view(label, ::strnlen(label, 64))
                                                  : std::string_view("CURRENT");
        keyturn::SecretBytes value = engine->engine.read_secret(secret_id, which);
        *out_len = value.size();
        if (value.size() > cap) {
            throw Error(Status::buffer_too_small,
                        "secret \"" + std::string(secret_id) + "\": the value is " +
                            std::to_string(value.size()) + " bytes; the buffer holds " +
                            std::to_string(cap));
        }
        if (!value.empty()) std::memcpy(buf, value.data(), value.size());
        return Status::ok;
    });
}

int keyturn_secret_status(char **out, keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(out, "out");
        require(engine, "engine");
        *out = copy_out(id == nullptr
                            ? engine->engine.secret_status_json()
                            : engine->engine.secret_status_json(identifier(id, "secret id")));
        return Status::ok;
    });
}

namespace {
int read_into(const keyturn::Credential &c, void *buf, size_t cap, size_t *out_len,
              unsigned *out_flags) {
    if (out_len == nullptr) return set_error(Status::invalid_argument, "out_len is NULL");
    if (buf == nullptr && cap != 0) return set_error(Status::invalid_argument, "buf is NULL");
    bool stale = false;
    Status s = c.read(static_cast<char *>(buf), cap, out_len, &stale);
    switch (s) {
        case Status::ok:
            if (out_flags != nullptr) *out_flags = stale ? KEYTURN_READ_STALE : 0u;
            return KEYTURN_OK;
        case Status::buffer_too_small:
            return set_error(s, "credential \"" + c.id() + "\": the value is " +
                                    std::to_string(*out_len) + " bytes; the buffer holds " +
                                    std::to_string(cap));
        case Status::expired:
            return set_error(s, "credential \"" + c.id() + "\": the value has expired");
        case Status::not_ready:
            return set_error(s, "credential \"" + c.id() + "\": no value yet");
        case Status::removed:
            return set_error(s, "credential \"" + c.id() + "\" was removed");
        default:
            return set_error(s, "credential \"" + c.id() + "\": read failed");
    }
}
}  // namespace

int keyturn_read(keyturn_engine *engine, const char *id, void *buf, size_t cap, size_t *out_len,
                 unsigned *out_flags) {
    return guarded([&] {
        require(engine, "engine");
        auto credential = engine->engine.find(identifier(id, "credential id"));
        return static_cast<Status>(read_into(*credential, buf, cap, out_len, out_flags));
    });
}

int keyturn_credential_open(keyturn_credential **out, keyturn_engine *engine, const char *id) {
    return guarded([&] {
        require(out, "out");
        require(engine, "engine");
        auto handle = std::make_unique<keyturn_credential>();
        handle->credential = engine->engine.find(identifier(id, "credential id"));
        *out = handle.release();
        return Status::ok;
    });
}

int keyturn_credential_read(const keyturn_credential *cred, void *buf, size_t cap, size_t *out_len,
                            unsigned *out_flags) {
    // The hot path: no exception can arise here, so no guard and no clearing of the
    // last error on success.
    if (cred == nullptr) return set_error(Status::invalid_argument, "cred is NULL");
    return read_into(*cred->credential, buf, cap, out_len, out_flags);
}

void keyturn_credential_close(keyturn_credential *cred) {
    delete cred;
}

int keyturn_subscribe(uint64_t *out_id, keyturn_engine *engine, keyturn_event_fn fn,
                      void *user_data, keyturn_release_fn release) {
    return guarded([&] {
        require(out_id, "out_id");
        require(engine, "engine");
        require(reinterpret_cast<const void *>(fn), "fn");
        auto owner = adopt_later(user_data);
        std::uint64_t id = engine->engine.subscribe([fn, owner](const keyturn::Event &event) {
            std::string text = event.to_json();
            fn(text.c_str(), text.size(), owner->data);
        });
        owner->release = release;
        *out_id = id;
        return Status::ok;
    });
}

int keyturn_unsubscribe(keyturn_engine *engine, uint64_t id) {
    return guarded([&] {
        require(engine, "engine");
        engine->engine.unsubscribe(id);
        return Status::ok;
    });
}

int keyturn_set_logger(keyturn_engine *engine, int min_level, keyturn_log_fn fn, void *user_data,
                       keyturn_release_fn release) {
    return guarded([&] {
        require(engine, "engine");
        if (fn == nullptr) {
            engine->engine.set_logger(keyturn::LogLevel::error, {});
            // Nothing will ever call a NULL fn: its user_data is released at once.
            if (release != nullptr) release(user_data);
            return Status::ok;
        }
        auto owner = adopt_later(user_data);
        engine->engine.set_logger(to_level(min_level),
                                  [fn, owner](keyturn::LogLevel level, const std::string &line) {
                                      fn(static_cast<int>(level), line.c_str(), owner->data);
                                  });
        owner->release = release;
        return Status::ok;
    });
}

}  // extern "C"
