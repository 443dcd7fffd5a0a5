#pragma once
// Failure codes used inside the engine. Their values are the C ABI's status codes,
// which never change once published (capi/keyturn.h checks the two agree).

#include <stdexcept>
#include <string>

namespace keyturn {

enum class Status : int {
    ok = 0,
    invalid_argument = -1,
    config = -2,
    not_found = -3,
    exists = -4,
    state = -5,
    not_ready = -6,
    expired = -7,
    buffer_too_small = -8,
    stale_completion = -9,
    store = -10,
    no_memory = -11,
    removed = -12,
    internal = -13,
};

// Thrown at the engine's public edges; the C ABI turns it into a status and the
// per-thread message. The message never contains a secret value.
class Error : public std::runtime_error {
  public:
    Error(Status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    Status status() const noexcept { return status_; }

  private:
    Status status_;
};

}  // namespace keyturn
