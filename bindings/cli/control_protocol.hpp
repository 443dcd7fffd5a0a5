#pragma once
// The control protocol between `keyturn` commands and the agent, without any I/O.
//
// Over a Unix socket the client sends one JSON object on one line and the agent
// answers with one JSON object on one line, then closes the connection:
//
//   {"op": "status"}               {"ok": true, "time": <unix s>, "credentials": [...],
//                                   "secrets": [...]}    (status JSON: fingerprints only)
//   {"op": "refresh", "id": "api"} {"ok": true, "message": "..."}
//   {"op": "rotate", "id": "db"}   {"ok": true, "version": "20261203T182301Z-3f9a1c"}
//
// A failure is {"ok": false, "error": "why", "code": "..."}, where code is
// "bad_request", "not_found", "state" or "failed". No answer ever holds a secret.

#include <cstddef>
#include <string>
#include <string_view>

namespace keyturn {
class Engine;
}

namespace keyturn::agent {

// The largest request line the agent reads; a longer one is refused.
inline constexpr std::size_t kMaxRequestSize = 64 * 1024;

// Answers one request line (without its newline) against `engine`. Never throws
// for a bad request: every mistake becomes a failure answer.
std::string answer_request(Engine &engine, std::string_view line);

// A failure answer, for the I/O layer's own refusals.
std::string failure_answer(std::string_view code, std::string_view error);

}  // namespace keyturn::agent
