#!/usr/bin/python3
"""The PostgreSQL exec hook, with a way to be caught mid-step (tests only).

When the environment names the step in KT_PAUSE_STEP, this does the step's work, then
writes its process id to KT_PAUSE_MARKER and waits before answering: the agent can be
killed after the step's effect happened and before keyturn journaled it, the worst
moment for a crash. Neither variable is secret; the request stays on stdin.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples",
                                "postgres_rotation"))

import pg_steps  # noqa: E402


def main():
    request = json.load(sys.stdin)
    result = pg_steps.handle(request)
    if request.get("step") == os.environ.get("KT_PAUSE_STEP"):
        marker = os.environ["KT_PAUSE_MARKER"]
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
        time.sleep(120)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
