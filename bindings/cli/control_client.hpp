#pragma once
// The client half of the control protocol (see control_protocol.hpp).

#include <chrono>
#include <stdexcept>
#include <string>

namespace keyturn::agent {

// Nobody answered on the socket: no agent is running there, or it did not answer in
// time.
class AgentUnreachable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Sends one request line and returns the answer line, without its newline. Throws
// AgentUnreachable when the socket cannot be reached or no full answer arrives
// within `timeout`.
std::string call_agent(const std::string &socket_path, const std::string &request,
                       std::chrono::milliseconds timeout);

}  // namespace keyturn::agent
