"""Tests of the Python binding against the real libkeyturn.

Run from the repository root:
    KEYTURN_LIBRARY=build/libkeyturn.so python3 -m unittest discover -s tests/python -v

Every secret value starts with SENTINEL; tearDown checks that no log record, event,
status or exception message seen during the test contains it.
"""

import gc
import hashlib
import itertools
import json
import logging
import os
import queue
import secrets
import stat
import sys
import tempfile
import threading
import time
import unittest
import weakref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bindings", "python"))

import keyturn  # noqa: E402

SENTINEL = "kt-secret-SENTINEL-"
TIMEOUT = 10.0  # bound on every wait; tests normally finish far sooner
# Unix times cross the ABI as doubles (about 0.2 us apart in this century) and become
# nanoseconds inside keyturn; expiry comparisons allow for that rounding and no more.
ROUNDING = 1e-6


def fingerprint(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return hashlib.sha256(value).hexdigest()[:8]


def spec(cred_id, hook="issuer", **extra):
    """A credential spec with no jitter and quick backoff, so tests wait little."""
    result = {
        "id": cred_id,
        "provider": {"type": "hook", "name": hook},
        "policy": {
            "jitter": 0,
            "backoff": {"initial": 0.1, "multiplier": 2, "max": 1, "jitter": 0},
        },
    }
    result.update(extra)
    return result


def wait_until(predicate, timeout=TIMEOUT, interval=0.01):
    """Polls predicate() until true; returns False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class CaptureHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.records_lock = threading.Lock()

    def emit(self, record):
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        with self.records_lock:
            self.records.append((record.levelno, text))

    def texts(self):
        with self.records_lock:
            return [text for _, text in self.records]


class EventLog:
    """Every event of one engine, kept for the leak check, and waited on in order."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()
        self.consumed = set()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, predicate, timeout=TIMEOUT):
        """The earliest event not returned before for which predicate is true."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for index, event in enumerate(self.events):
                    if index not in self.consumed and predicate(event):
                        self.consumed.add(index)
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(e.type, e.credential) for e in self.events[-20:]]
                    raise AssertionError(f"no matching event within {timeout} s; last {seen}")
                self.cond.wait(left)

    def wait_type(self, type_, credential="api", timeout=TIMEOUT):
        return self.wait(lambda e: e.type == type_ and e.credential == credential, timeout)

    def count(self, type_, credential="api"):
        with self.cond:
            return sum(1 for e in self.events if e.type == type_ and e.credential == credential)

    def texts(self):
        with self.cond:
            return [json.dumps(e.data) for e in self.events]


class BindingTest(unittest.TestCase):
    def setUp(self):
        self.logger = logging.getLogger("keyturn")
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.capture = CaptureHandler()
        self.logger.addHandler(self.capture)
        self.seen_texts = []  # exception messages and statuses seen by the test
        self.event_logs = []
        self.engines = []
        self.counter = itertools.count(1)

    def tearDown(self):
        for engine in self.engines:
            engine.close()
        self.logger.removeHandler(self.capture)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]
        texts = self.capture.texts() + self.seen_texts
        for log in self.event_logs:
            texts += log.texts()
        leaked = [text for text in texts if SENTINEL in text]
        self.assertEqual(leaked, [], "a secret value reached a log, event or message")

    # -- helpers -----------------------------------------------------------------------

    def make_engine(self, credentials=(), **engine_options):
        options = {"threads": 2, "hook_timeout": 5, "drain_timeout": 0.5}
        options.update(engine_options)
        engine = keyturn.Engine({"engine": options, "credentials": list(credentials)})
        self.engines.append(engine)
        events = EventLog()
        engine.subscribe(events)
        self.event_logs.append(events)
        return engine, events

    def secret(self, tag="v"):
        return f"{SENTINEL}{tag}-{next(self.counter)}-{secrets.token_hex(6)}"

    def expect_error(self, cls, fn, *args, **kwargs):
        with self.assertRaises(cls) as caught:
            fn(*args, **kwargs)
        exc = caught.exception
        self.seen_texts.append(str(exc))
        if isinstance(exc, keyturn.KeyturnError):
            self.assertIsInstance(exc.status, int)
            self.assertEqual(exc.name, keyturn.status_name(exc.status))
            self.seen_texts.append(exc.message)
        return exc

    def status(self, engine, cred_id=None):
        result = engine.status(cred_id)
        self.seen_texts.append(json.dumps(result))
        return result


class LibraryTest(BindingTest):
    def test_version_and_status_names(self):
        self.assertRegex(keyturn.version(), r"^\d+\.\d+\.\d+")
        major, minor, patch = (int(x) for x in keyturn.version().split(".")[:3])
        self.assertEqual(keyturn.version_number(), major * 10000 + minor * 100 + patch)
        self.assertEqual(keyturn.status_name(-7), "KEYTURN_E_EXPIRED")
        self.assertEqual(keyturn.status_name(-9), "KEYTURN_E_STALE_COMPLETION")
        self.assertEqual(keyturn.status_name(-999), "KEYTURN_UNKNOWN")
        self.assertTrue(os.path.exists(keyturn.library_path))

    def test_every_status_has_its_exception_class(self):
        classes = {
            -1: keyturn.InvalidArgumentError, -2: keyturn.ConfigError,
            -3: keyturn.NotFoundError, -4: keyturn.ExistsError, -5: keyturn.StateError,
            -6: keyturn.NotReadyError, -7: keyturn.ExpiredError,
            -8: keyturn.BufferTooSmallError, -9: keyturn.StaleCompletionError,
            -10: keyturn.StoreError, -11: keyturn.NoMemoryError, -12: keyturn.RemovedError,
            -13: keyturn.InternalError,
        }
        for status, cls in classes.items():
            self.assertEqual(cls.status, status)
            self.assertTrue(issubclass(cls, keyturn.KeyturnError))
            self.assertNotEqual(keyturn.status_name(status), "KEYTURN_UNKNOWN")

    def test_results_and_requests_hide_secrets_in_repr(self):
        token = keyturn.Token(self.secret(), expires_in=5, refresh=self.secret("r"))
        request = keyturn.RefreshRequest("api", "scheduled", 1, value=self.secret(),
                                         refresh=self.secret("r"))
        self.seen_texts += [repr(token), repr(request)]


class HookTest(BindingTest):
    def test_hook_refreshes_and_read_returns_its_value(self):
        engine, events = self.make_engine()
        issued, refresh_tokens, requests = [], [], []

        @engine.hook("issuer")
        def issue(request):
            requests.append(request)
            value, refresh = self.secret(), self.secret("r")
            issued.append(value)
            refresh_tokens.append(refresh)
            return {"value": value, "expires_in": 60, "refresh": refresh,
                    "metadata": {"region": "eu"}}

        engine.add(spec("api", metadata={"team": "core"}))
        self.expect_error(keyturn.NotReadyError, engine.read, "api")
        engine.start()
        event = events.wait_type("refreshed")

        self.assertEqual(engine.read_text("api"), issued[0])
        self.assertEqual(event.fingerprint, fingerprint(issued[0]))
        self.assertIsInstance(event.version, int)
        self.assertGreater(event.expires_at, time.time() + 50)
        first = requests[0]
        self.assertEqual((first.credential, first.reason, first.attempt), ("api", "initial", 1))
        self.assertIsNone(first.value)
        self.assertIsNone(first.refresh)
        self.assertEqual(first.metadata.get("team"), "core")

        status = self.status(engine, "api")
        self.assertEqual(status["id"], "api")
        self.assertEqual(status["state"], "fresh")
        self.assertEqual(status["fingerprint"], fingerprint(issued[0]))
        self.assertEqual([s["id"] for s in self.status(engine)], ["api"])

        engine.refresh("api")
        second_event = events.wait_type("refreshed")
        self.assertGreater(second_event.version, event.version)
        self.assertEqual(engine.read("api"), issued[1].encode())
        second = requests[1]
        self.assertEqual(second.reason, "manual")
        self.assertEqual(second.value, issued[0])
        self.assertEqual(second.refresh, refresh_tokens[0])
        self.assertEqual(second.version, event.version)
        self.assertEqual(second.metadata.get("region"), "eu")

    def test_token_result_and_context_manager(self):
        engine, events = self.make_engine()
        value = self.secret()
        engine.register_hook("issuer", lambda request: keyturn.Token(value, expires_in=60))
        engine.add(spec("api"))
        with engine as started:
            self.assertIs(started, engine)
            events.wait_type("refreshed")
            self.assertEqual(engine.read_text("api"), value)
        self.assertTrue(engine.closed)
        self.expect_error(keyturn.StateError, engine.read, "api")
        engine.close()  # idempotent

    def test_hook_exception_fails_refresh_then_engine_recovers(self):
        engine, events = self.make_engine()
        values, requests = [], []

        @engine.hook("issuer")
        def issue(request):
            requests.append(request)
            if len(requests) == 2:
                # The core must scrub the current value and refresh token from this text.
                raise RuntimeError(f"upstream rejected {request.value} / {request.refresh}")
            values.append(self.secret())
            return {"value": values[-1], "expires_in": 60, "refresh": self.secret("r")}

        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        engine.refresh("api")

        failed = events.wait_type("refresh_failed")
        self.assertIn("RuntimeError: upstream rejected", failed.error)
        self.assertIn(fingerprint(values[0]), failed.error)
        self.assertEqual(failed.action, "retry")
        self.assertIsNotNone(failed.retry_at)
        self.assertEqual(engine.read_text("api"), values[0])  # the old value still serves

        events.wait_type("refreshed")  # the retry, after a 0.1 s backoff
        self.assertEqual(engine.read_text("api"), values[1])
        self.assertEqual(requests[2].reason, "retry")
        self.assertEqual(requests[2].attempt, 2)

    def test_exception_quoting_a_secret_with_a_nul_byte_is_scrubbed(self):
        engine, events = self.make_engine()
        value = self.secret() + "\x00tail"

        @engine.hook("issuer")
        def issue(request):
            if request.value is not None:
                raise ValueError(f"server refused {request.value} today")
            return {"value": value, "expires_in": 60}

        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        engine.refresh("api")
        failed = events.wait_type("refresh_failed")
        self.assertIn(fingerprint(value), failed.error)
        self.assertTrue(failed.error.endswith(" today"))
        self.assertNotIn("tail", failed.error)

    def test_refresh_failed_with_login_action_discards_refresh_material(self):
        engine, events = self.make_engine()
        requests = []

        @engine.hook("issuer")
        def issue(request):
            requests.append(request)
            if len(requests) == 2:
                raise keyturn.RefreshFailed("refresh token revoked", action="login")
            return {"value": self.secret(), "expires_in": 60, "refresh": self.secret("r")}

        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        engine.refresh("api")
        failed = events.wait_type("refresh_failed")
        self.assertEqual(failed.action, "login")
        self.assertIn("refresh token revoked", failed.error)
        events.wait_type("refreshed")
        self.assertEqual(requests[2].reason, "login")
        self.assertIsNone(requests[2].refresh)

    def test_give_up_stops_until_refresh_is_called(self):
        engine, events = self.make_engine()
        calls = []

        @engine.hook("issuer")
        def issue(request):
            calls.append(request.reason)
            if len(calls) == 1:
                raise keyturn.RefreshFailed("account disabled", action="give_up")
            return {"value": self.secret(), "expires_in": 60}

        engine.add(spec("api"))
        engine.start()
        failed = events.wait_type("refresh_failed")
        self.assertEqual(failed.action, "give_up")
        self.assertIsNone(failed.retry_at)
        self.assertEqual(self.status(engine, "api")["state"], "failed")
        engine.refresh("api")
        events.wait_type("refreshed")
        self.assertEqual(len(calls), 2)

    def test_manual_completion_from_another_thread(self):
        engine, events = self.make_engine()
        pending = queue.Queue()
        engine.register_hook("issuer", lambda request, completion: pending.put(
            (request, completion)), manual=True)
        engine.add(spec("api"))
        engine.start()

        request, completion = pending.get(timeout=TIMEOUT)
        self.assertEqual(completion.credential, "api")
        self.assertEqual(request.reason, "initial")
        self.expect_error(keyturn.NotReadyError, engine.read, "api")

        value, refresh = self.secret(), self.secret("r")
        errors = []

        def answer():
            try:
                completion.succeed(value, 60, refresh=refresh)
            except Exception as exc:  # reported below
                errors.append(exc)

        worker = threading.Thread(target=answer)
        worker.start()
        worker.join(TIMEOUT)
        self.assertEqual(errors, [])
        events.wait_type("refreshed")
        self.assertEqual(engine.read_text("api"), value)

        # Second round: the bytes-only path (keyturn_complete_value) keeps the refresh.
        engine.refresh("api")
        request, completion = pending.get(timeout=TIMEOUT)
        self.assertEqual(request.refresh, refresh)
        second = self.secret()
        threading.Thread(target=completion.succeed, args=(second.encode(), 60)).start()
        events.wait_type("refreshed")
        self.assertEqual(engine.read_text("api"), second)
        engine.refresh("api")
        request, completion = pending.get(timeout=TIMEOUT)
        self.assertEqual(request.refresh, refresh)
        completion.fail("not now", action="retry", retry_after=30)
        failed = events.wait_type("refresh_failed")
        self.assertIn("not now", failed.error)
        self.assertGreaterEqual(failed.retry_at, time.time() + 20)

    def test_completing_twice_raises_stale_completion(self):
        engine, events = self.make_engine()
        pending = queue.Queue()
        engine.register_hook("issuer", lambda r, c: pending.put(c), manual=True)
        engine.add(spec("api"))
        engine.start()
        completion = pending.get(timeout=TIMEOUT)
        first = self.secret()
        completion.complete({"value": first, "expires_in": 60})
        self.expect_error(keyturn.StaleCompletionError, completion.succeed, self.secret(), 60)
        self.expect_error(keyturn.StaleCompletionError, completion.complete,
                          {"value": self.secret(), "expires_in": 60})
        self.expect_error(keyturn.StaleCompletionError, completion.fail, "late")
        events.wait_type("refreshed")
        self.assertEqual(engine.read_text("api"), first)
        self.assertEqual(events.count("refreshed"), 1)

    def test_hook_that_never_answers_times_out(self):
        engine, events = self.make_engine()
        pending = queue.Queue()
        engine.register_hook("issuer", lambda r, c: pending.put(c), manual=True)
        slow_backoff = {"initial": 30, "multiplier": 2, "max": 60, "jitter": 0}
        engine.add(spec("api", hook_timeout=0.3,
                        policy={"jitter": 0, "backoff": slow_backoff}))
        engine.start()
        completion = pending.get(timeout=TIMEOUT)
        started = time.monotonic()
        failed = events.wait_type("refresh_failed")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        # The message names the timeout, as "timed out" or by its length.
        self.assertRegex(failed.error.lower(), r"time(d)?[ _-]?out|0\.3 ?s")
        self.expect_error(keyturn.StaleCompletionError, completion.succeed, self.secret(), 60)
        self.expect_error(keyturn.NotReadyError, engine.read, "api")

    def test_hook_timeout_in_a_plain_hook_is_swallowed_when_it_returns(self):
        engine, events = self.make_engine()
        release = threading.Event()
        returned = threading.Event()

        @engine.hook("issuer")
        def issue(request):
            try:
                release.wait(TIMEOUT)
                return {"value": self.secret(), "expires_in": 60}
            finally:
                returned.set()

        slow_backoff = {"initial": 30, "multiplier": 2, "max": 60, "jitter": 0}
        engine.add(spec("api", hook_timeout=0.3, policy={"jitter": 0, "backoff": slow_backoff}))
        engine.start()
        events.wait_type("refresh_failed")
        release.set()
        self.assertTrue(returned.wait(TIMEOUT))
        self.assertTrue(wait_until(lambda: any(
            "answered after its refresh ended" in t for t in self.capture.texts())))
        self.expect_error(keyturn.NotReadyError, engine.read, "api")

    def test_slow_hook_does_not_stall_other_credentials(self):
        engine, events = self.make_engine(threads=1)
        release = threading.Event()

        @engine.hook("slow")
        def slow(request):
            release.wait(TIMEOUT)
            return {"value": self.secret(), "expires_in": 60}

        fast_value = self.secret()
        engine.register_hook("fast", lambda request: {"value": fast_value, "expires_in": 60})
        engine.add(spec("slow", hook="slow"))
        engine.add(spec("fast", hook="fast"))
        engine.start()
        events.wait_type("refreshed", credential="fast")
        self.assertEqual(engine.read_text("fast"), fast_value)
        release.set()
        events.wait_type("refreshed", credential="slow")

    def test_garbage_hook_results_fail_the_refresh(self):
        engine, events = self.make_engine()
        results = iter([42, {"nonsense": True}, {"value": 5, "expires_in": 60},
                        {"value": "x" * (1024 * 1024 + 1), "expires_in": 60},
                        {"value": self.secret(), "expires_in": float("nan")}])
        good = self.secret()

        @engine.hook("issuer")
        def issue(request):
            return next(results, {"value": good, "expires_in": 60})

        engine.add(spec("api"))
        engine.start()
        errors = [events.wait_type("refresh_failed").error for _ in range(5)]
        self.assertIn("TypeError", errors[0])
        self.assertIn("ValueError", errors[4])  # NaN is not JSON
        events.wait_type("refreshed")
        self.assertEqual(engine.read_text("api"), good)
        self.assertTrue(any("KEYTURN_E_CONFIG" in t for t in self.capture.texts()))

    def test_values_with_nul_and_non_utf8_bytes_round_trip(self):
        engine, events = self.make_engine()
        values = [(SENTINEL + "\x00nul\x00").encode() + b"\xff\xfe\x00\x80",
                  SENTINEL + "text\x00with nul",
                  SENTINEL.encode() + os.urandom(200_000)]
        binary_refresh = SENTINEL.encode() + b"\x00\xc3\x28 refresh"
        requests = []

        @engine.hook("issuer")
        def issue(request):
            requests.append(request)
            return keyturn.Token(values[len(requests) - 1], expires_in=60,
                                 refresh=binary_refresh if len(requests) == 1 else None)

        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        self.assertEqual(engine.read("api"), values[0])
        engine.refresh("api")
        events.wait_type("refreshed")
        self.assertEqual(requests[1].value, values[0])  # not UTF-8: bytes
        self.assertEqual(requests[1].refresh, binary_refresh)
        self.assertEqual(engine.read("api"), values[1].encode())
        self.assertEqual(engine.read_text("api"), values[1])
        engine.refresh("api")
        events.wait_type("refreshed")
        self.assertEqual(engine.read("api"), values[2])  # larger than the read buffer


class LifetimeTest(BindingTest):
    def test_dropping_every_reference_to_callbacks_keeps_them_working(self):
        engine, events = self.make_engine()
        refreshed = queue.Queue()

        def install():
            def issue(request):
                return {"value": self.secret(), "expires_in": 1}

            def on_event(event):
                if event.type == "refreshed":
                    refreshed.put(event.version)

            engine.register_hook("issuer", issue)
            engine.subscribe(on_event)
            return weakref.ref(issue), weakref.ref(on_event)

        refs = install()
        gc.collect()
        self.assertTrue(all(ref() is not None for ref in refs))
        engine.add(spec("api"))
        engine.start()
        versions = []
        for _ in range(3):
            gc.collect()
            versions.append(refreshed.get(timeout=TIMEOUT))
        self.assertEqual(versions, sorted(versions))
        engine.close()
        # keyturn released user_data: the registry let go of both functions.
        self.assertTrue(wait_until(lambda: gc.collect() is not None and all(
            ref() is None for ref in refs)))

    def test_engine_dropped_without_close_is_freed(self):
        refreshed = threading.Event()
        engine = keyturn.Engine({"engine": {"threads": 1, "drain_timeout": 0.5}})

        def issue(request):
            return {"value": self.secret(), "expires_in": 60}

        engine.register_hook("issuer", issue)
        engine.subscribe(lambda event: refreshed.set())
        engine.add(spec("api"))
        engine.start()
        self.assertTrue(refreshed.wait(TIMEOUT))
        hook_ref = weakref.ref(issue)
        del issue, engine
        gc.collect()
        self.assertTrue(wait_until(lambda: gc.collect() is not None and hook_ref() is None))

    def test_close_while_a_hook_is_in_flight(self):
        engine, events = self.make_engine(drain_timeout=0.2)
        entered, release, returned = threading.Event(), threading.Event(), threading.Event()

        @engine.hook("issuer")
        def issue(request):
            entered.set()
            release.wait(TIMEOUT)
            returned.set()
            return {"value": self.secret(), "expires_in": 60}

        pending = queue.Queue()
        engine.register_hook("manual", lambda r, c: pending.put(c), manual=True)
        engine.add(spec("api"))
        engine.add(spec("other", hook="manual"))
        engine.start()
        self.assertTrue(entered.wait(TIMEOUT))
        completion = pending.get(timeout=TIMEOUT)

        started = time.monotonic()
        engine.close()
        self.assertLess(time.monotonic() - started, 5)
        self.assertTrue(engine.closed)
        release.set()
        self.assertTrue(returned.wait(TIMEOUT))
        self.expect_error(keyturn.StaleCompletionError, completion.succeed, self.secret(), 60)
        self.assertTrue(wait_until(lambda: any(
            "answered after its refresh ended" in t for t in self.capture.texts())))
        self.expect_error(keyturn.StateError, engine.read, "api")
        self.expect_error(keyturn.StateError, engine.start)
        self.expect_error(keyturn.StateError, engine.add, spec("third"))
        engine.close()

    def test_close_from_a_subscriber_is_deferred(self):
        engine, events = self.make_engine()
        closed = threading.Event()
        stop_errors = queue.Queue()
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})

        def on_event(event):
            if event.type == "refreshed" and not closed.is_set():
                try:
                    engine.stop()
                except keyturn.KeyturnError as exc:
                    stop_errors.put(exc)
                engine.close()
                closed.set()

        engine.subscribe(on_event)
        engine.add(spec("api"))
        engine.start()
        self.assertTrue(closed.wait(TIMEOUT))
        exc = stop_errors.get(timeout=TIMEOUT)
        self.seen_texts.append(str(exc))
        self.assertIsInstance(exc, keyturn.StateError)
        self.assertTrue(engine.closed)

    def test_stop_and_start_again(self):
        engine, events = self.make_engine()
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        engine.stop(drain=1)
        engine.stop()
        self.expect_error(keyturn.StateError, engine.refresh, "api")
        engine.start()
        engine.start()
        engine.refresh("api")
        events.wait_type("refreshed")

    def test_remove_and_add_again(self):
        engine, events = self.make_engine()
        values = []

        @engine.hook("issuer")
        def issue(request):
            values.append(self.secret())
            return {"value": values[-1], "expires_in": 60}

        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        self.assertEqual(engine.read_text("api"), values[-1])  # opens a cached handle
        engine.remove("api")
        events.wait_type("removed")
        self.expect_error(keyturn.NotFoundError, engine.read, "api")
        engine.add(spec("api"))
        events.wait_type("refreshed")
        self.assertEqual(engine.read_text("api"), values[-1])

    def test_unsubscribe_releases_the_subscriber(self):
        engine, events = self.make_engine()
        calls = []

        def on_event(event):
            calls.append(event)

        subscription = engine.subscribe(on_event)
        ref = weakref.ref(on_event)
        del on_event
        engine.unsubscribe(subscription)
        self.assertTrue(wait_until(lambda: gc.collect() is not None and ref() is None))
        self.expect_error(keyturn.NotFoundError, engine.unsubscribe, subscription)
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        self.assertEqual(calls, [])

    def test_failing_subscriber_is_logged_and_others_still_get_events(self):
        engine, events = self.make_engine()

        def broken(event):
            raise ValueError("subscriber bug")

        engine.subscribe(broken)
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        self.assertTrue(wait_until(lambda: any(
            "subscriber bug" in t for t in self.capture.texts())))

    def test_event_queue(self):
        engine, _ = self.make_engine()
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.add(spec("api"))
        with engine.events() as stream:
            engine.start()
            event = stream.wait_for(lambda e: e.type == "refreshed", TIMEOUT)
            self.assertEqual(event.credential, "api")
            self.assertEqual(event.data["type"], "refreshed")
            self.assertIsInstance(event.time, float)
            with self.assertRaises(AttributeError):
                event.no_such_field


class ConcurrencyTest(BindingTest):
    def test_many_readers_never_see_an_expired_or_unknown_value(self):
        engine, events = self.make_engine()
        issued = {}  # value -> expires_at (unix seconds)
        lock = threading.Lock()

        @engine.hook("issuer")
        def issue(request):
            value = self.secret()
            expires_at = time.time() + 1.0
            with lock:
                issued[value] = expires_at
            return {"value": value, "expires_at": expires_at}

        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")

        problems, counts = [], []
        stop_at = time.monotonic() + 2.5

        def reader():
            reads = 0
            while time.monotonic() < stop_at and reads < 200_000 and len(problems) < 100:
                began = time.time()
                try:
                    value = engine.read_text("api")
                except keyturn.KeyturnError as exc:
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                reads += 1
                with lock:
                    expires_at = issued.get(value)
                if expires_at is None:
                    problems.append("a value the hook never issued")
                elif began >= expires_at + ROUNDING:
                    problems.append(f"read began {began - expires_at:.6f} s after expiry")
            counts.append(reads)

        threads = [threading.Thread(target=reader) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        self.seen_texts += problems
        self.assertEqual(problems[:5], [])
        self.assertEqual(len(counts), 8)
        self.assertGreater(sum(counts), 1000)
        self.assertGreaterEqual(events.count("refreshed"), 3)  # 1 s lifetimes, 2.5 s run
        self.assertEqual(events.count("expired"), 0)

    def test_no_read_that_starts_after_expiry_returns_the_value(self):
        engine, events = self.make_engine()
        issued = {}

        @engine.hook("issuer")
        def issue(request):
            if request.credential in issued:
                raise keyturn.RefreshFailed("issuer down", action="give_up")
            issued[request.credential] = time.time() + 0.25
            return {"value": self.secret(), "expires_at": issued[request.credential]}

        late = []
        for round_ in range(8):
            cred = f"api{round_}"
            engine.add(spec(cred))
            if round_ == 0:
                engine.start()
            events.wait_type("refreshed", credential=cred)
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                began = time.time()
                try:
                    engine.read(cred)
                except keyturn.ExpiredError:
                    break
                if began >= issued[cred] + ROUNDING:
                    late.append(began - issued[cred])
        self.assertEqual(len(late), 0, f"{len(late)} reads began after expires_at and still "
                         f"returned the value, up to {max(late or [0]) * 1000:.3f} ms after")


class MalformedInputTest(BindingTest):
    def test_bad_configurations(self):
        exc = self.expect_error(keyturn.ConfigError, keyturn.Engine, '{"engine": ')
        self.assertEqual(exc.status, -2)
        exc = self.expect_error(keyturn.ConfigError, keyturn.Engine,
                                {"engine": {"threads": "many"}})
        self.assertIn("engine.threads", exc.message)
        exc = self.expect_error(keyturn.ConfigError, keyturn.Engine, {"engine": {"threads": 0}})
        self.assertIn("engine.threads", exc.message)
        exc = self.expect_error(keyturn.ConfigError, keyturn.Engine, {"bogus": 1})
        self.assertIn("bogus", exc.message)
        bad_jitter = spec("x")
        bad_jitter["policy"]["jitter"] = 0.9
        exc = self.expect_error(keyturn.ConfigError, keyturn.Engine,
                                {"credentials": [spec("ok"), bad_jitter]})
        self.assertIn("credentials[1].policy.jitter", exc.message)
        exc = self.expect_error(keyturn.ConfigError, keyturn.Engine,
                                {"engine": {"hook_timeout": "soon"}})
        self.assertIn("engine.hook_timeout", exc.message)
        self.expect_error(keyturn.ConfigError, keyturn.Engine, "[]")
        self.expect_error(keyturn.ConfigError, keyturn.Engine, "{}\x00{}")
        self.expect_error(TypeError, keyturn.Engine, 12)
        with keyturn.Engine('{"engine": {"hook_timeout": "250ms", "drain_timeout": "1s"}}'):
            pass

    def test_bad_specs_and_unknown_ids(self):
        engine, _ = self.make_engine()
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        self.expect_error(keyturn.ConfigError, engine.add, "[1, 2")
        exc = self.expect_error(keyturn.ConfigError, engine.add, {"id": "api"})
        self.assertIn("provider", exc.message)
        exc = self.expect_error(keyturn.KeyturnError, engine.add, spec("bad id!"))
        self.assertIn(exc.status, (-1, -2))
        exc = self.expect_error(keyturn.ConfigError, engine.add, spec("api", serve_stale="yes"))
        self.assertIn("serve_stale", exc.message)
        engine.add(spec("api"))
        self.expect_error(keyturn.ExistsError, engine.add, spec("api"))
        engine.start()
        self.expect_error(keyturn.NotFoundError, engine.add, spec("other", hook="missing"))
        for method in (engine.read, engine.read_ex, engine.read_text, engine.refresh,
                       engine.remove, engine.status):
            exc = self.expect_error(keyturn.NotFoundError, method, "nope")
            self.assertIsInstance(exc, LookupError)
        self.expect_error(keyturn.NotFoundError, engine.unsubscribe, 987654321)
        self.expect_error(keyturn.ExistsError, engine.register_hook, "issuer", print)
        self.expect_error(keyturn.InvalidArgumentError, engine.register_hook, "bad name", print)
        self.expect_error(keyturn.InvalidArgumentError, engine.register_hook, "", print)
        self.expect_error(keyturn.InvalidArgumentError, engine.read, "nul\x00id")
        self.expect_error(TypeError, engine.read, 7)

    def test_oversized_identifiers_are_rejected(self):
        engine, _ = self.make_engine()
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.start()
        huge = "a" * (1024 * 1024 + 1)
        for method in (engine.read, engine.refresh, engine.remove, engine.status):
            self.expect_error(keyturn.KeyturnError, method, huge)
        self.expect_error(keyturn.KeyturnError, engine.read, "a" * 257)
        self.expect_error(keyturn.KeyturnError, engine.add, spec(huge))
        self.expect_error(keyturn.KeyturnError, engine.register_hook, huge, print)
        self.expect_error(keyturn.KeyturnError, engine.add, {"id": "x" * 5 * 1024 * 1024})

    def test_start_fails_when_a_hook_is_missing(self):
        engine, _ = self.make_engine(credentials=[spec("api", hook="nobody")])
        exc = self.expect_error(keyturn.NotFoundError, engine.start)
        self.assertIn("nobody", exc.message)
        self.assertIn("api", exc.message)


class ServeStaleTest(BindingTest):
    def test_expired_values_are_served_only_with_serve_stale(self):
        engine, events = self.make_engine()
        values = {}

        @engine.hook("issuer")
        def issue(request):
            if request.credential in values:
                raise keyturn.RefreshFailed("issuer down", action="give_up")
            values[request.credential] = self.secret()
            return {"value": values[request.credential], "expires_in": 1}

        engine.add(spec("stale", serve_stale=True))
        engine.add(spec("strict"))
        engine.start()
        for cred in ("stale", "strict"):
            events.wait(lambda e, c=cred: e.type == "expired" and e.credential == c)

        value, stale = engine.read_ex("stale")
        self.assertEqual(value.decode(), values["stale"])
        self.assertTrue(stale)
        self.expect_error(keyturn.ExpiredError, engine.read, "strict")
        # It gave up and then expired; keyturn.h does not say which state wins.
        self.assertIn(self.status(engine, "strict")["state"], ("expired", "failed"))


class StoreTest(BindingTest):
    def test_file_store_persists_value_and_refresh_material(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "api.json")
            first_value, first_refresh = self.secret(), self.secret("r")
            engine, events = self.make_engine()
            engine.register_hook("issuer", lambda r: {
                "value": first_value, "expires_in": 60, "refresh": first_refresh})
            engine.add(spec("api", store={"type": "file", "path": path}))
            engine.start()
            event = events.wait_type("refreshed")
            self.assertTrue(event.persisted)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
            engine.close()

            engine, events = self.make_engine()
            requests = []

            @engine.hook("issuer")
            def issue(request):
                requests.append(request)
                return {"value": self.secret(), "expires_in": 60}

            engine.add(spec("api", store={"type": "file", "path": path}))
            self.assertEqual(engine.read_text("api"), first_value)  # loaded on add
            engine.start()
            self.assertEqual(self.status(engine, "api")["state"], "fresh")
            self.assertEqual(requests, [])
            engine.refresh("api")
            events.wait_type("refreshed")
            self.assertEqual(requests[0].value, first_value)
            self.assertEqual(requests[0].refresh, first_refresh)

    def test_unreadable_store_file_is_a_store_error(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "api.json")
            with open(path, "w") as file:
                file.write("{ not json")
            engine, _ = self.make_engine()
            engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
            self.expect_error(keyturn.StoreError, engine.add,
                              spec("api", store={"type": "file", "path": path}))
            with open(path) as file:
                self.assertEqual(file.read(), "{ not json")


class LoggingTest(BindingTest):
    def test_log_lines_reach_the_keyturn_logger(self):
        engine, events = self.make_engine()
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        self.assertTrue(wait_until(lambda: any(
            "api" in text for text in self.capture.texts())))
        levels = {level for level, _ in self.capture.records}
        self.assertTrue(levels <= {logging.DEBUG, logging.INFO, logging.WARNING,
                                   logging.ERROR})

    def test_a_custom_logger_receives_the_lines(self):
        custom = logging.getLogger("keyturn.test.custom")
        custom.setLevel(logging.DEBUG)
        engine = keyturn.Engine({"engine": {"threads": 1}}, logger=custom)
        self.engines.append(engine)
        events = EventLog()
        self.event_logs.append(events)
        engine.subscribe(events)
        engine.register_hook("issuer", lambda r: {"value": self.secret(), "expires_in": 60})
        engine.add(spec("api"))
        engine.start()
        events.wait_type("refreshed")
        # "keyturn.test.custom" propagates to the captured "keyturn" logger.
        self.assertTrue(wait_until(lambda: any(
            "api" in text for text in self.capture.texts())))

if __name__ == "__main__":
    unittest.main()
