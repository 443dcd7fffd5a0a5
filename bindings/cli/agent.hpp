#pragma once
// `keyturn run`: the agent. It keeps the credentials and secrets of one
// configuration file fresh, mirrors their values into sink files, answers the
// control socket, re-reads its configuration on SIGHUP and stops on SIGTERM or
// SIGINT.

#include <string>

namespace keyturn::agent {

struct RunOptions {
    std::string config_file;
    // From --socket; empty to take the file's agent.socket or the default.
    std::string socket;
};

// Runs until SIGTERM or SIGINT. Returns the process's exit code: 0 after a clean
// stop, 1 when the agent could not start (another agent listens on the socket, a
// store cannot be read), 3 when the configuration is invalid.
int run_agent(const RunOptions &options);

}  // namespace keyturn::agent
