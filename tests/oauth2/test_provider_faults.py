"""Faults between keyturn's HTTP refresh providers and their endpoint, through the Python
binding: the oauth2 provider (the refresh-token grant, RFC 6749 section 6) and the
http_json provider, each against a token server inside this file on 127.0.0.1.

The server answers one request at a time from a plan: a good token, an HTTP error, an
answer slower than the request timeout, a connection reset in the middle of the body, a
malformed or oversized body, or a token whose expiry has already passed; once the plan
is used up it answers with good tokens. Refresh tokens rotate on every good answer and a
used one is refused, so a retry that reuses one shows. Its listener can be stopped (the
server is down) and started again on the same port, and over HTTPS it can present a
certificate for another name.

Every test starts from a refresh token: the first refresh succeeds with a 3 s lifetime,
faults follow at once (policy.refresh_at 0.1), and the answer after the faults lives a
minute, so the count of requests is exactly what the plan implies. Each test checks
that every refresh_failed event names the credential, the endpoint and the cause; that
a reader thread got the first value while it was valid and never a value past its
expiry; that retries follow the backoff (no two attempts closer than 0.15 s); and that
no access token, refresh token or client secret (all contain kt-secret-SENTINEL)
shows in an event, a log line, a status or an error message.
"""

import base64
import hashlib
import http.server
import json
import logging
import os
import secrets
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "bindings", "python"), os.path.join(REPO, "tests", "support")]

import keyturn  # noqa: E402
from test_certs import make_test_ca  # noqa: E402
from test_helpers import captured_logger, wait_for, write_private  # noqa: E402

MARK = "kt-secret-SENTINEL"
BACKOFF = {"initial": 0.2, "max": 1, "jitter": 0}
MIN_GAP = 0.15          # no two attempts closer than this: no burst
FIRST_LIFETIME = 3      # seconds; the value the faults must not take away
LATER_LIFETIME = 60     # after the faults: no further refresh while a test runs
REQUEST_TIMEOUT = 2     # timeouts.request, except in the timeout tests
SHORT_TIMEOUT = 0.5     # timeouts.request in the timeout tests
SLOW = 1.5              # how long a slow answer takes
MAX_BYTES = 65536       # max_response_bytes
CLIENT_ID = "keyturn-test-client"

NOT_READY, EXPIRED = "<not ready>", "<expired>"


def fingerprint(value):
    """keyturn's fingerprint of a value: the first 4 bytes of its SHA-256, in hex."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class Issuer:
    """The token server's state, whichever listener (plain, TLS, restarted) serves it.

    `flavour` is "oauth2" (a form-encoded refresh-token grant with HTTP Basic client
    authentication, answered with access_token / refresh_token / expires_in) or
    "http_json" (a JSON body with the refresh token, answered with authToken /
    refreshToken / validUntil in unix seconds)."""

    PATHS = {"oauth2": "/oauth2/token", "http_json": "/auth/refresh"}

    def __init__(self, flavour):
        self.flavour = flavour
        self.path = self.PATHS[flavour]
        self.lock = threading.Lock()
        self.plan = []          # the answers to give next, one per request
        self.requests = []      # (monotonic time, answer) of every request that came
        self.connections = []   # monotonic time of every connection accepted
        self.valid = set()      # refresh tokens that may still be used, once
        self.used = set()
        self.reuses = 0
        self.good = 0           # good tokens handed out
        self.known = []         # every secret this server made
        self.client_secret = self.secret("client")
        self.first_refresh = self.secret("refresh")
        self.valid.add(self.first_refresh)
        self.stopping = threading.Event()

    def secret(self, kind):
        value = f"{MARK}-{kind}-{secrets.token_hex(8)}"
        with self.lock:
            self.known.append(value)
        return value

    def next_answer(self):
        with self.lock:
            answer = self.plan.pop(0) if self.plan else "ok"
            self.requests.append((time.monotonic(), answer))
            return answer

    def take(self, refresh):
        """Uses up a refresh token; False if it is not (or no longer) valid."""
        with self.lock:
            if refresh in self.used:
                self.reuses += 1
            self.used.add(refresh)
            if refresh not in self.valid:
                return False
            self.valid.discard(refresh)
            return True

    def grant(self, lifetime):
        """A new access token and rotated refresh token that live `lifetime` seconds."""
        access, refresh = self.secret("access"), self.secret("refresh")
        with self.lock:
            self.valid.add(refresh)
        if self.flavour == "oauth2":
            return {"access_token": access, "token_type": "Bearer", "expires_in": lifetime,
                    "refresh_token": refresh, "scope": "tokens:read"}
        return {"authToken": access, "refreshToken": refresh,
                "validUntil": round(time.time() + lifetime, 3)}

    def count(self):
        with self.lock:
            return len(self.requests)


class Listener(http.server.ThreadingHTTPServer):
    """Serves an Issuer on 127.0.0.1; over TLS when `tls` (an ssl.SSLContext) is given,
    which may be swapped at any time: each connection takes the context of its accept."""

    daemon_threads = True

    def __init__(self, issuer, port=0, tls=None):
        self.issuer = issuer
        self.tls = tls
        super().__init__(("127.0.0.1", port), Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def get_request(self):
        sock, address = super().get_request()
        with self.issuer.lock:
            self.issuer.connections.append(time.monotonic())
        tls = self.tls
        if tls is not None:  # the handshake runs on the connection's thread, in setup()
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        pass  # a refused handshake, a client that gave up on a slow answer: expected

    def stop(self):
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=5)


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = 5  # no connection may hold a thread for long

    def log_message(self, *args):
        pass

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def send_json(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        issuer = self.server.issuer
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        answer = issuer.next_answer()
        if self.path != issuer.path:
            return self.send_json(404, {"error": "not_found"})
        if answer == 500:
            return self.send_json(500, {"error": "server_error"})
        if answer == 503:
            return self.send_json(503, {"error": "temporarily_unavailable"})
        if answer == 429:
            return self.send_json(429, {"error": "slow_down"}, [("Retry-After", "2")])
        if answer == "slow":
            # Longer than the client waits; nothing is used up, nothing is sent.
            issuer.stopping.wait(SLOW)
            self.close_connection = True
            return None
        if answer == "reset":
            return self.reset_mid_body()
        if answer == "malformed":
            return self.send_json(200, f'{{"access_token": "{MARK}-cut-short'.encode())
        if answer == "oversized":
            pad = "x" * (MAX_BYTES + 40000)
            return self.send_json(200, {"pad": pad, "access_token": f"{MARK}-too-big"})
        refused = self.refused(body)
        if refused:
            return self.send_json(*refused)
        if answer == "ok":
            with issuer.lock:
                issuer.good += 1
                lifetime = FIRST_LIFETIME if issuer.good == 1 else LATER_LIFETIME
            return self.send_json(200, issuer.grant(lifetime))
        # An answer whose expiry has passed already; the refresh token still rotates, as
        # it would at a server whose clock is wrong.
        token = issuer.grant(FIRST_LIFETIME)
        if answer == "expires_in_0":
            token["expires_in"] = 0
        elif answer == "expires_in_negative":
            token["expires_in"] = -30
        elif answer == "expires_at_past":
            token["validUntil"] = round(time.time() - 30, 3)
        else:
            raise AssertionError(f"unknown planned answer {answer!r}")
        return self.send_json(200, token)

    def refused(self, body):
        """(status, body) when the request is not a valid refresh, or None."""
        issuer = self.server.issuer
        if issuer.flavour == "oauth2":
            form = urllib.parse.parse_qs(body.decode())
            expected = base64.b64encode(f"{CLIENT_ID}:{issuer.client_secret}".encode())
            if self.headers.get("Authorization") != "Basic " + expected.decode():
                return 401, {"error": "invalid_client"}
            if form.get("grant_type") != ["refresh_token"]:
                return 400, {"error": "unsupported_grant_type"}
            if not issuer.take((form.get("refresh_token") or [""])[0]):
                return 400, {"error": "invalid_grant",
                             "error_description": "refresh token used or unknown"}
            return None
        try:
            refresh = json.loads(body).get("refreshToken")
        except ValueError:
            return 400, {"error": "not JSON"}
        if not issuer.take(refresh):
            return 401, {"error": "refresh token not valid"}
        return None

    def reset_mid_body(self):
        """Headers that announce 4096 bytes, a few of them, then a TCP reset."""
        head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                "Content-Length: 4096\r\n\r\n")
        self.connection.sendall(head.encode() + f'{{"access_token": "{MARK}-'.encode())
        time.sleep(0.05)  # let the client read what was sent before the reset comes
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True


class Reader(threading.Thread):
    """Reads one credential through the binding every 10 ms until stopped (30 s at
    most), keeping (unix time before the read, value or NOT_READY / EXPIRED)."""

    def __init__(self, engine, cred):
        super().__init__(daemon=True)
        self.engine = engine
        self.cred = cred
        self.reads = []
        self.errors = []    # the messages of the exceptions reads raised
        self.done = threading.Event()

    def run(self):
        end = time.monotonic() + 30
        while not self.done.is_set() and time.monotonic() < end:
            before = time.time()
            try:
                got = self.engine.read_text(self.cred)
            except keyturn.NotReadyError as e:
                got = NOT_READY
                self.errors.append(str(e))
            except keyturn.ExpiredError as e:
                got = EXPIRED
                self.errors.append(str(e))
            self.reads.append((before, got))
            self.done.wait(0.01)

    def stop(self):
        self.done.set()
        self.join(timeout=5)


class FaultTestCase(unittest.TestCase):
    """One provider, `flavour`, against an Issuer; subclasses pick the flavour."""

    flavour = None
    cred = None

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.issuer = Issuer(self.flavour)
        self.addCleanup(self.issuer.stopping.set)  # slow answers end at once
        self.events = []
        self.events_lock = threading.Lock()
        self.logger, self.lines = captured_logger(f"keyturn.test.{self.id()}")
        self.messages = []   # error messages seen anywhere else (statuses, exceptions)
        self.reader = None

    # -- set-up ------------------------------------------------------------------------

    def listen(self, port=0, tls=None):
        listener = Listener(self.issuer, port, tls)
        self.addCleanup(listener.stop)
        return listener

    def url(self, listener, scheme="http", host="127.0.0.1"):
        return f"{scheme}://{host}:{listener.port}{self.issuer.path}"

    def spec(self, url, timeout=REQUEST_TIMEOUT, tls=None, refresh_at=0.1):
        seed = os.path.join(self.tmp.name, "seed")
        write_private(seed, self.issuer.first_refresh)
        if self.flavour == "oauth2":
            secret_file = os.path.join(self.tmp.name, "client-secret")
            write_private(secret_file, self.issuer.client_secret)
            provider = {"type": "oauth2", "token_url": url, "client_id": CLIENT_ID,
                        "client_secret_file": secret_file, "client_auth": "basic",
                        "scope": "tokens:read"}
        else:
            provider = {"type": "http_json", "url": url,
                        "headers": {"X-Client": "keyturn-test"},
                        "body": '{"refreshToken": "{{refresh}}"}',
                        "response": {"value": "/authToken", "refresh": "/refreshToken",
                                     "expires_at": "/validUntil"}}
        provider["timeouts"] = {"connect": 1, "request": timeout}
        provider["max_response_bytes"] = MAX_BYTES
        if tls is not None:
            provider["tls"] = tls
        return {"id": self.cred, "provider": provider,
                "seed": {"file": seed, "format": "refresh_token"},
                "store": {"type": "file", "path": os.path.join(self.tmp.name, "store.json")},
                "policy": {"refresh_at": refresh_at, "jitter": 0, "backoff": BACKOFF}}

    def start(self, spec):
        """An engine with the credential, started, and a reader thread on it."""
        engine = keyturn.Engine({"engine": {"threads": 1, "drain_timeout": 2}},
                                logger=self.logger)
        engine.set_log_level(logging.DEBUG)
        engine.subscribe(self.on_event)
        engine.add(spec)
        engine.start()
        self.addCleanup(engine.close)
        self.reader = Reader(engine, self.cred)
        self.reader.start()
        self.addCleanup(self.reader.stop)
        return engine

    def finish(self, engine):
        """Stops the reader and the engine, keeping the last status for the leak check."""
        self.reader.stop()
        self.messages.append(json.dumps(engine.status(self.cred)))
        engine.close()

    def on_event(self, event):
        with self.events_lock:
            self.events.append(event.data)

    def of_type(self, kind):
        with self.events_lock:
            return [e for e in self.events if e["type"] == kind]

    def refreshed(self, version):
        """The refreshed event of `version`, once it came."""
        return next((e for e in self.of_type("refreshed") if e["version"] == version), None)

    def wait_refreshed(self, version, timeout):
        event = wait_for(lambda: self.refreshed(version), timeout)
        self.assertIsNotNone(event, f"no refresh to version {version} in {timeout} s: "
                                    f"{self.of_type('refresh_failed')}")
        return event

    # -- the checks of every test --------------------------------------------------------

    def check_failures(self, failures, endpoint, causes, action="retry"):
        """Every failure names the credential, the endpoint and its cause; `causes` holds
        one predicate (or a substring) per failure, in order."""
        self.assertEqual(len(failures), len(causes), failures)
        for event, cause in zip(failures, causes):
            self.assertEqual(event["credential"], self.cred, event)
            self.assertIn(endpoint, event["error"])
            self.assertEqual(event["action"], action, event)
            if isinstance(cause, str):
                self.assertIn(cause, event["error"])
            else:
                self.assertTrue(cause(event["error"].lower()), event["error"])

    def check_attempts(self, times, count, min_gaps=()):
        """`count` attempts, none closer than MIN_GAP to the one before; `min_gaps` maps an
        attempt's index to the least gap before it (Retry-After)."""
        self.assertEqual(len(times), count, times)
        gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
        self.assertTrue(all(g >= MIN_GAP for g in gaps), gaps)
        for index, least in dict(min_gaps).items():
            self.assertGreaterEqual(gaps[index - 1], least, gaps)

    def request_times(self):
        with self.issuer.lock:
            return [t for t, _ in self.issuer.requests]

    def check_reads(self, faults_from):
        """The reader got the first value after the faults began and while it was valid,
        never a value past its expiry, and ExpiredError while none was valid."""
        expiry = {e["fingerprint"]: e["expires_at"] for e in self.of_type("refreshed")}
        first = self.refreshed(1)
        later = self.refreshed(2)
        reads = self.reader.reads
        self.assertTrue(reads)
        for before, got in reads:
            if got in (NOT_READY, EXPIRED):
                continue
            self.assertIn(got, self.issuer.known)
            # Times in events have three decimals; the read began before that expiry.
            self.assertLess(before, expiry[fingerprint(got)] + 0.001, (before, got))
        old = [before for before, got in reads
               if got not in (NOT_READY, EXPIRED) and fingerprint(got) == first["fingerprint"]]
        self.assertTrue(any(t >= faults_from for t in old),
                        "the first value was not read while the faults went on")
        expired = [before for before, got in reads if got == EXPIRED]
        for t in expired:
            self.assertGreaterEqual(t, first["expires_at"] - 0.05, "expired while valid")
        if later is not None and later["time"] > first["expires_at"] + 0.1:
            # The faults outlasted the first value: reads failed in between.
            gap = [t for t in expired if first["expires_at"] <= t < later["time"] - 0.05]
            self.assertTrue(gap, "no ExpiredError while no valid value remained")

    def check_no_leak(self):
        """No secret in any event, log line, status or error message."""
        with self.lines.lock:
            text = "\n".join(self.lines.lines)
        with self.events_lock:
            text += "\n" + json.dumps(self.events)
        text += "\n" + "\n".join(self.messages + self.reader.errors)
        self.assertNotIn("SENTINEL", text)
        with self.issuer.lock:
            known = list(self.issuer.known)
        for value in known:
            self.assertNotIn(value, text)
        with self.issuer.lock:
            self.assertEqual(self.issuer.reuses, 0, "a refresh token was used twice")

    def unix_time_of(self, index):
        """The unix time at which request `index` came to the server."""
        with self.issuer.lock:
            at = self.issuer.requests[index][0]
        return time.time() - (time.monotonic() - at)

    def endpoint(self, listener, host="127.0.0.1"):
        return f"{host}:{listener.port}{self.issuer.path}"


def refused(text):
    return "refused" in text or "connect" in text


def timed_out(text):
    return "timed out" in text


def reset(text):
    return "reset" in text or "closed" in text


def wrong_certificate(text):
    return "certificate" in text and any(w in text for w in ("name", "host", "mismatch"))


class FaultTests:
    """The faults, for either provider; mixed into one TestCase per provider."""

    def run_plan(self, plan, timeout=REQUEST_TIMEOUT, within=15):
        """The first refresh succeeds, then the server answers from `plan`, then with
        good tokens; returns the refresh_failed events once the good token came."""
        listener = self.listen()
        self.where = self.endpoint(listener)
        engine = self.start(self.spec(self.url(listener), timeout=timeout))
        self.wait_refreshed(1, 5)
        with self.issuer.lock:
            self.issuer.plan = list(plan)
        self.wait_refreshed(2, within)
        time.sleep(0.3)  # no request may follow the good one
        self.finish(engine)
        return self.of_type("refresh_failed")

    def check_plan(self, failures, causes, min_gaps=()):
        self.check_failures(failures, self.where, causes)
        # The first good answer, one request per planned answer, the good one after.
        self.check_attempts(self.request_times(), len(causes) + 2, min_gaps)
        self.check_reads(self.unix_time_of(1))
        self.check_no_leak()

    def test_1_a_server_that_is_down_is_retried_and_named(self):
        listener = self.listen()
        engine = self.start(self.spec(self.url(listener), refresh_at=0.5))
        self.wait_refreshed(1, 5)
        listener.stop()  # nothing listens on the port now
        down_from = time.time()
        self.assertTrue(wait_for(lambda: len(self.of_type("refresh_failed")) >= 5, 10))
        self.listen(listener.port)  # back, on the same port
        self.wait_refreshed(2, 5)
        time.sleep(0.3)
        self.finish(engine)
        failures = self.of_type("refresh_failed")
        self.check_failures(failures, self.endpoint(listener), [refused] * 5)
        self.check_attempts([e["time"] for e in failures], 5)
        self.assertEqual(self.issuer.count(), 2)  # the first refresh and the one after
        self.check_reads(down_from)
        self.check_no_leak()

    def test_2_http_500_and_503_are_retried(self):
        plan = [500, 503, 500, 503, 500, 503, 500]  # outlasts the first value
        failures = self.run_plan(plan)
        self.check_plan(failures, [f"HTTP {code}" for code in plan])

    def test_3_429_waits_for_retry_after(self):
        failures = self.run_plan([429, 500])
        self.check_plan(failures, ["HTTP 429", "HTTP 500"], min_gaps={2: 1.9})

    def test_4_a_timeout_is_retried(self):
        failures = self.run_plan(["slow", "slow"], timeout=SHORT_TIMEOUT)
        self.check_plan(failures, [timed_out, timed_out])
        self.assertIn("0.5", failures[0]["error"])

    def test_5_a_reset_in_the_middle_of_the_body_is_retried(self):
        failures = self.run_plan(["reset", "reset"])
        self.check_plan(failures, [reset, reset])

    def test_6_malformed_and_oversized_bodies_are_retried(self):
        failures = self.run_plan(["malformed", "oversized", "malformed"])
        self.check_plan(failures, ["not valid JSON", str(MAX_BYTES), "not valid JSON"])

    def test_7_a_token_already_past_its_expiry_is_never_published(self):
        plan = self.past_expiry_plan
        failures = self.run_plan(plan)
        self.check_plan(failures, self.past_expiry_causes)
        # The good token after them is version 2: none of those answers was published.
        self.assertEqual([e["version"] for e in self.of_type("refreshed")], [1, 2])

    def test_8_a_certificate_for_another_name_is_refused_and_the_right_one_accepted(self):
        certs = make_test_ca(os.path.join(self.tmp.name, "certs"))
        right = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        right.load_cert_chain(certs.server_cert, certs.server_key)
        wrong = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        wrong.load_cert_chain(certs.wrong_name_cert, certs.wrong_name_key)
        listener = self.listen(tls=right)
        url = self.url(listener, scheme="https", host="localhost")
        engine = self.start(self.spec(url, tls={"ca_file": certs.ca_cert}))
        self.wait_refreshed(1, 5)
        listener.tls = wrong  # the next connections get a certificate for wrong.invalid
        wrong_from = time.time()
        self.assertTrue(wait_for(lambda: len(self.of_type("refresh_failed")) >= 2, 5))
        listener.tls = right
        self.wait_refreshed(2, 5)
        time.sleep(0.3)
        self.finish(engine)
        failures = self.of_type("refresh_failed")
        endpoint = f"https://{self.endpoint(listener, host='localhost')}"
        self.check_failures(failures, endpoint, [wrong_certificate] * 2)
        # Nothing was sent over the refused connections: two requests, four connections.
        self.assertEqual(self.issuer.count(), 2)
        with self.issuer.lock:
            connections = list(self.issuer.connections)
        self.check_attempts(connections, 4)
        self.check_reads(wrong_from)
        self.check_no_leak()


class OAuth2Faults(FaultTests, FaultTestCase):
    flavour = "oauth2"
    cred = "idp-token"
    past_expiry_plan = ["expires_in_0", "expires_in_negative"]
    past_expiry_causes = ["lifetime is 0s", "lifetime is -30s"]


class HttpJsonFaults(FaultTests, FaultTestCase):
    flavour = "http_json"
    cred = "console-token"
    past_expiry_plan = ["expires_at_past"]
    past_expiry_causes = ["expired"]


if __name__ == "__main__":
    unittest.main()
