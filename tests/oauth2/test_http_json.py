"""keyturn's configurable HTTP JSON provider against a small refresh API in this test,
shaped like a token console's: the credential starts from a token document
({"authToken", "refreshToken", "validUntil"}), each refresh posts the refresh token
in a JSON body and gets a new document back, with the refresh token rotated.

The server refuses any refresh token it has seen before, so a double use fails the
test; faults (429 with Retry-After, 500, malformed and oversized answers) are served
on demand, and the requests are counted to check that retries follow the backoff.
"""

import http.server
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "bindings", "python")]

import keyturn  # noqa: E402

LIFETIME = 3


class RefreshApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.valid = set()      # refresh tokens that may be used once
        self.seen = set()       # every refresh token ever presented
        self.reuses = 0
        self.requests = []      # (time, status)
        self.faults = []        # statuses or kinds to serve next
        self.issued = []        # every auth token handed out

    def issue(self):
        auth = "kt-secret-SENTINEL-auth-" + secrets.token_hex(8)
        refresh = "kt-secret-SENTINEL-refresh-" + secrets.token_hex(8)
        with self.lock:
            self.valid.add(refresh)
            self.issued.append(auth)
        return {"authToken": auth, "refreshToken": refresh,
                "validUntil": int(time.time()) + LIFETIME}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        api = self.server
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        with api.lock:
            fault = api.faults.pop(0) if api.faults else None
        if fault == 429:
            api.requests.append((time.monotonic(), 429))
            return self.answer(429, {"error": "slow down"}, [("Retry-After", "2")])
        if fault == 500:
            api.requests.append((time.monotonic(), 500))
            return self.answer(500, {"error": "internal"})
        if fault == "malformed":
            api.requests.append((time.monotonic(), 200))
            return self.answer(200, b'{"authToken": ')
        if fault == "oversized":
            api.requests.append((time.monotonic(), 200))
            return self.answer(200, b"{\"pad\": \"" + b"x" * (2 << 20) + b"\"}")
        token = request.get("refreshToken")
        with api.lock:
            reused = token in api.seen
            api.seen.add(token)
            usable = token in api.valid
            api.valid.discard(token)
            if reused:
                api.reuses += 1
        if not usable:
            api.requests.append((time.monotonic(), 401))
            return self.answer(401, {"error": "refresh token not valid"})
        api.requests.append((time.monotonic(), 200))
        self.answer(200, api.issue())


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class HttpJsonProvider(unittest.TestCase):
    def setUp(self):
        self.api = RefreshApi()
        thread = threading.Thread(target=self.api.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(self.api.server_close)
        self.addCleanup(self.api.shutdown)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.events = []

    def engine_with(self, backoff=None):
        seed = os.path.join(self.tmp.name, "token.json")
        if not os.path.exists(seed):
            write_private(seed, json.dumps(self.api.issue()))
        spec = {
            "id": "cache",
            "provider": {
                "type": "http_json",
                "url": f"http://127.0.0.1:{self.api.server_address[1]}/refresh",
                "headers": {"X-Client": "keyturn-test"},
                "body": '{"refreshToken": "{{refresh}}"}',
                "response": {"value": "/authToken", "refresh": "/refreshToken",
                             "expires_at": "/validUntil"},
                "max_response_bytes": 65536,
            },
            "store": {"type": "file", "path": os.path.join(self.tmp.name, "cache.json")},
            "seed": {"file": seed, "format": "token_document"},
            "policy": {"jitter": 0, "backoff": backoff or {"initial": 0.2, "max": 1,
                                                           "jitter": 0}},
        }
        engine = keyturn.Engine()
        engine.subscribe(lambda e: self.events.append(e.data))
        engine.add(spec)
        return engine

    def test_rotating_refresh_tokens_are_used_once_and_reads_never_expire(self):
        engine = self.engine_with()
        expired = []
        with engine:
            # The seed's value is readable at once: it came from the token document.
            self.assertTrue(engine.read_text("cache").startswith("kt-secret-SENTINEL-auth-"))
            end = time.monotonic() + 12
            while time.monotonic() < end:
                try:
                    engine.read("cache")
                except keyturn.ExpiredError:
                    expired.append(time.monotonic())
                time.sleep(0.01)
        refreshed = [e for e in self.events if e["type"] == "refreshed"]
        self.assertGreaterEqual(len(refreshed), 4)
        self.assertEqual(self.api.reuses, 0)
        self.assertEqual(expired, [])
        self.assertEqual([e for e in self.events if e["type"] == "refresh_failed"], [])
        self.assertNotIn("SENTINEL", json.dumps(self.events))

    def test_faults_are_retried_by_the_backoff_and_named(self):
        self.api.faults = [429, 500, "malformed", "oversized"]
        engine = self.engine_with()
        with engine:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any(
                    e["type"] == "refreshed" for e in self.events):
                time.sleep(0.05)
        failed = [e for e in self.events if e["type"] == "refresh_failed"]
        self.assertEqual(len(failed), 4, failed)
        self.assertIn("HTTP 429", failed[0]["error"])
        self.assertIn("HTTP 500", failed[1]["error"])
        self.assertIn("refresh response", failed[2]["error"])
        self.assertIn("65536", failed[3]["error"])
        for e in failed:
            self.assertIn(f"127.0.0.1:{self.api.server_address[1]}/refresh", e["error"])
        self.assertNotIn("SENTINEL", json.dumps(self.events))
        # Retry-After 2 s is honoured after the 429: no request came sooner.
        times = [t for t, _ in self.api.requests]
        self.assertGreaterEqual(times[1] - times[0], 1.9)
        self.assertEqual(self.api.reuses, 0)
        self.assertTrue(any(e["type"] == "refreshed" for e in self.events))

    def test_a_refused_token_is_final(self):
        engine = self.engine_with()
        with self.api.lock:
            self.api.valid.clear()  # the server forgot every refresh token
        with engine:
            time.sleep(3.5)  # the first refresh comes at two thirds of the 3 s lifetime
        failed = [e for e in self.events if e["type"] == "refresh_failed"]
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["action"], "give_up")
        self.assertIn("HTTP 401", failed[0]["error"])


if __name__ == "__main__":
    unittest.main()
