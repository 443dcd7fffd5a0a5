#!/usr/bin/python3
"""keyturn exec hook: rotates a PostgreSQL role's password, one step per run.

keyturn writes the step's JSON request to stdin; this writes the JSON result to stdout
and exits 0, a failed step included (the result says what failed). It exits non-zero
only on a malformed request or a bug, and then prints no value: stderr gets where the
fault happened, stdout a generic error result.

    keyturn run --config rotation.json   # with "command": ["/usr/bin/python3", "<this>"]
"""

import json
import os
import sys
import traceback

# Keep the example's directory free of compiled files, which may also be read-only.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pg_steps  # noqa: E402


def main():
    try:
        request = json.load(sys.stdin)
    except ValueError as exc:  # the decoder's message holds a position, never the text
        return answer({"error": f"request is not JSON: {exc}"}, status=1)
    if not isinstance(request, dict):
        return answer({"error": "request is not a JSON object"}, status=1)

    try:
        result = pg_steps.handle(request)
    except Exception as exc:  # a bug: its message might quote a value, so leave it out
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"postgres hook: {type(exc).__name__} at {os.path.basename(where.filename)}:"
              f"{where.lineno}", file=sys.stderr)
        return answer({"error": f"internal error in the PostgreSQL hook "
                                f"({type(exc).__name__})"}, status=1)
    return answer(result, status=0)


def answer(result, status):
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
