#!/usr/bin/python3
"""Rotates a PostgreSQL role's password from Python, through keyturn's ctypes binding.

The same four steps as exec_hook.py (pg_steps.py), but run in this process by an engine
that loads libkeyturn.so: keyturn journals each step in a file store, and this program
prints every event and checks, after each rotation, that the role logs in with the new
CURRENT password and no longer with the old one.

    rotate_with_binding.py --host 127.0.0.1 --port 5432 --dbname postgres --role app \\
        --store /var/lib/keyturn/db-app.json --seed-file /run/keyturn/db-app.initial \\
        --rotations 3

--seed-file holds the role's password today (mode 0600); it is read only when the store
has no value yet. Passwords are never printed: events show fingerprints.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(os.path.dirname(HERE)), "bindings", "python")]

import keyturn  # noqa: E402
import pg_steps  # noqa: E402
import psycopg2  # noqa: E402


def logs_in(args, password):
    """True when the role logs in with `password` (passed to libpq in memory)."""
    try:
        psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.role,
                         password=password, connect_timeout=10).close()
        return True
    except psycopg2.OperationalError:
        return False


def as_dict(request):
    """The hook protocol's request, as pg_steps reads it."""

    def version(v):
        return None if v is None else {"version": v.version, "value": v.value}

    return {
        "secret": request.secret,
        "step": request.step,
        "version": request.version,
        "attempt": request.attempt,
        "current": version(request.current),
        "previous": version(request.previous),
        "pending": version(request.pending),
        "metadata": request.metadata,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="5432")
    parser.add_argument("--dbname", default="postgres")
    parser.add_argument("--role", required=True)
    parser.add_argument("--store", required=True, help="the secret's store file")
    parser.add_argument("--seed-file", help="the role's password today (mode 0600)")
    parser.add_argument("--rotations", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per rotation")
    args = parser.parse_args()

    spec = {
        "id": "db-" + args.role,
        "hook": {"type": "hook", "name": "postgres"},
        "store": {"type": "file", "path": args.store},
        "hook_timeout": 30,
        "retry": {"backoff": {"initial": 1, "max": 10}, "max_attempts": 5},
        "metadata": {"host": args.host, "port": str(args.port), "dbname": args.dbname,
                     "role": args.role},
    }
    if args.seed_file:
        spec["seed_file"] = args.seed_file

    with keyturn.Engine({"engine": {"hook_timeout": 30}}) as engine:
        @engine.rotation_hook("postgres")
        def postgres(request):
            result = pg_steps.handle(as_dict(request))
            if "error" in result:
                raise keyturn.StepFailed(result["error"], result.get("retry_after", 0))
            return result.get("value")

        events = engine.events()
        engine.add_secret(spec)
        engine.start()
        for n in range(1, args.rotations + 1):
            version = engine.rotate(spec["id"])
            print(f"rotation {n}: version {version}", flush=True)
            def show(event):
                print(f"  {event.type} {event.get('step') or ''} {event.get('error') or ''}",
                      flush=True)
                return event.type == "rotated" and event.get("version") == version

            try:
                events.wait_for(show, timeout=args.timeout)
            except TimeoutError:
                print(f"rotation {n} did not finish within {args.timeout} s", file=sys.stderr)
                return 1
            current = engine.read_secret(spec["id"], "CURRENT").decode()
            previous = engine.read_secret(spec["id"], "PREVIOUS").decode()
            if not logs_in(args, current):
                print("the new CURRENT password does not log in", file=sys.stderr)
                return 1
            if logs_in(args, previous):
                print("the PREVIOUS password still logs in", file=sys.stderr)
                return 1
            print(f"  {args.role} logs in with version {version} only", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
