#!/usr/bin/env python3
"""keyturn quickstart: keep one expiring token fresh.

A small token issuer lives in this file. Like an OAuth2 server, it hands out access tokens
that expire (here after 3 seconds) and refresh tokens that rotate: each refresh token
works once, and presenting it a second time is rejected as reuse.

keyturn keeps one token fresh by calling a refresh hook that talks to the issuer, and
stores it in a file. A reader thread reads the token the whole time and asks the issuer
whether each value was valid when it was read. Nothing here ever prints a token.

Run it from the repository root (after building libkeyturn into build/, or with
KEYTURN_LIBRARY set to the library's path):

    python3 examples/quickstart.py --seconds 20
"""

import argparse
import logging
import os
import secrets
import stat
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import keyturn  # noqa: E402

TOKEN_LIFETIME = 3.0  # seconds


class InvalidGrant(Exception):
    """The issuer refused a refresh token."""


class Issuer:
    """Mints short-lived access tokens and single-use refresh tokens."""

    def __init__(self, lifetime):
        self.lifetime = lifetime
        self.reuse_detected = 0
        self._lock = threading.Lock()
        self._access = {}  # access token -> expiry (unix seconds)
        self._unused = set()  # refresh tokens that may still be used, once
        self._used = set()

    def login(self):
        """The first grant, as with a password or client credentials."""
        with self._lock:
            return self._grant()

    def refresh(self, refresh_token):
        """Trades a refresh token for a new access token and a new refresh token."""
        with self._lock:
            if refresh_token in self._used:
                self.reuse_detected += 1
                raise InvalidGrant("refresh token already used")
            if refresh_token not in self._unused:
                raise InvalidGrant("unknown refresh token")
            self._unused.remove(refresh_token)
            self._used.add(refresh_token)
            return self._grant()

    def is_valid(self, access_token, at):
        """True if the issuer minted access_token and it had not expired at time `at`."""
        with self._lock:
            expires_at = self._access.get(access_token)
        return expires_at is not None and at < expires_at

    def _grant(self):
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        expires_at = time.time() + self.lifetime
        self._access[access] = expires_at
        self._unused.add(refresh)
        return access, refresh, expires_at


class Reader(threading.Thread):
    """Reads the token over and over, checking every value with the issuer."""

    def __init__(self, engine, issuer, credential):
        super().__init__(name="reader")
        self.engine, self.issuer, self.credential = engine, issuer, credential
        self.reads = self.bad_reads = self.errors = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            read_at = time.time()
            try:
                token = self.engine.read_text(self.credential)
            except keyturn.KeyturnError as exc:
                self.errors += 1
                print(f"read failed: {exc}", flush=True)
            else:
                self.reads += 1
                if not self.issuer.is_valid(token, read_at):
                    self.bad_reads += 1
            time.sleep(0.001)


def describe(event, started):
    """One line per event, with the fingerprint but never the token."""
    now = time.time()
    line = f"+{now - started:5.1f}s  {event.type:<14} {event.credential}"
    if event.type == "refreshed":
        line += (f"  v{event.version}  fingerprint {event.fingerprint}"
                 f"  expires in {event.expires_at - now:.1f}s"
                 f"  next refresh in {event.next_refresh_at - now:.1f}s")
    elif event.type == "refresh_failed":
        line += f"  {event.error}  (action: {event.action}, attempt {event.attempt})"
    elif event.type in ("expiring", "expired"):
        line += f"  expires_at {event.expires_at:.1f}"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="how long to run")
    parser.add_argument("--verbose", action="store_true", help="show keyturn's debug log")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    print(f"keyturn {keyturn.version()} from {keyturn.library_path}")
    issuer = Issuer(TOKEN_LIFETIME)
    started = time.time()
    counts = {"refreshed": 0, "refresh_failed": 0, "expired": 0}
    first_value = threading.Event()

    with tempfile.TemporaryDirectory(prefix="keyturn-quickstart-") as directory:
        store_path = os.path.join(directory, "demo.json")
        engine = keyturn.Engine({"engine": {"threads": 1, "hook_timeout": 5}})

        # The refresh hook: keyturn calls it before the token expires. It runs on a
        # worker thread of the binding, so it may block on the network.
        @engine.hook("demo-issuer")
        def refresh_token(request):
            try:
                if request.refresh:
                    access, refresh, expires_at = issuer.refresh(request.refresh)
                else:
                    access, refresh, expires_at = issuer.login()
            except InvalidGrant as exc:
                # The refresh token is no good: drop it and log in again.
                raise keyturn.RefreshFailed(str(exc), action="login") from None
            return keyturn.Token(access, expires_at=expires_at, refresh=refresh)

        def on_event(event):
            counts[event.type] = counts.get(event.type, 0) + 1
            if event.type == "refreshed":
                first_value.set()
            print(describe(event, started), flush=True)

        engine.subscribe(on_event)
        engine.add({
            "id": "demo",
            "provider": {"type": "hook", "name": "demo-issuer"},
            "store": {"type": "file", "path": store_path},
            "policy": {"jitter": 0.05},
        })

        with engine:
            if not first_value.wait(10):
                print("no token within 10 s", file=sys.stderr)
                return 1
            reader = Reader(engine, issuer, "demo")
            reader.start()
            time.sleep(args.seconds)
            reader.stopping.set()
            reader.join()
        file_mode = stat.S_IMODE(os.stat(store_path).st_mode) if os.path.exists(
            store_path) else None

    checks = [
        ("refreshes", counts["refreshed"], counts["refreshed"] >= max(2, args.seconds // 3)),
        ("failed refreshes", counts["refresh_failed"], counts["refresh_failed"] == 0),
        ("reads", reader.reads, reader.reads > 0),
        ("reads that failed", reader.errors, reader.errors == 0),
        ("reads of an expired or unknown token", reader.bad_reads, reader.bad_reads == 0),
        ("refresh tokens reused", issuer.reuse_detected, issuer.reuse_detected == 0),
        ("store file mode", oct(file_mode) if file_mode is not None else "no file",
         file_mode == 0o600),
    ]
    print("\nsummary")
    for name, value, ok in checks:
        print(f"  {'ok ' if ok else 'BAD'}  {name}: {value}")
    passed = all(ok for _, _, ok in checks)
    print("everything as expected" if passed else "something went wrong")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
