#pragma once
// The table `keyturn status` prints, from the agent's status answer.

#include <string>

#include <boost/json/fwd.hpp>

namespace keyturn::agent {

// One table of credentials (id, state, version, expires in, next refresh, last
// error) and one of secrets (id, state, current version, next rotation, last
// result). The answer holds fingerprints only, so the table holds no secret.
std::string format_status_table(const boost::json::object &answer);

// "45s", "3m20s", "2h05m", "3d04h": a short human duration.
std::string human_duration(double seconds);

}  // namespace keyturn::agent
