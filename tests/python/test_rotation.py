"""Tests of the rotation API of the Python binding against the real libkeyturn.

Every value starts with SENTINEL; no event, log record, status or exception seen during
a test may contain one.
"""

import json
import logging
import os
import stat
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bindings", "python"))

import keyturn  # noqa: E402

SENTINEL = "kt-secret-SENTINEL-rot-"
TIMEOUT = 10.0


def secret_spec(secret_id="db", hook="steps", **extra):
    spec = {"id": secret_id, "hook": {"type": "hook", "name": hook},
            "retry": {"backoff": {"initial": 0.05, "max": 0.2, "jitter": 0},
                      "max_attempts": 3}}
    spec.update(extra)
    return spec


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class RotationHooks(unittest.TestCase):
    def setUp(self):
        self.engine = keyturn.Engine()
        self.events = self.engine.events()
        self.seen = []
        self.engine.subscribe(lambda e: self.seen.append(json.dumps(e.data)))
        self.log = Recorder()
        logging.getLogger("keyturn").addHandler(self.log)
        self.engine.set_log_level(logging.DEBUG)
        self.counter = 0
        self.lock = threading.Lock()

    def tearDown(self):
        self.engine.close()
        logging.getLogger("keyturn").removeHandler(self.log)
        for text in self.seen + self.log.lines:
            self.assertNotIn(SENTINEL, text)

    def new_value(self):
        with self.lock:
            self.counter += 1
            return f"{SENTINEL}{self.counter}"

    def wait_rotated(self, version=None):
        return self.events.wait_for(
            lambda e: e.type == "rotated" and (version is None or e.get("version") == version),
            TIMEOUT)

    def test_one_hook_for_every_step(self):
        steps = []

        @self.engine.rotation_hook("steps")
        def hook(request):
            steps.append((request.step, request.version))
            if request.step == "create":
                self.assertIsNone(request.pending)
                return self.new_value()
            self.assertEqual(request.pending.version, request.version)
            return None

        self.engine.add_secret(secret_spec())
        self.engine.seed_secret("db", SENTINEL + "seed")
        self.engine.start()
        version = self.engine.rotate("db")
        self.wait_rotated(version)
        self.assertEqual([s for s, _ in steps], ["create", "set", "test", "finish"])
        self.assertTrue(all(v == version for _, v in steps))
        self.assertEqual(self.engine.read_secret("db"), (SENTINEL + "1").encode())
        self.assertEqual(self.engine.read_secret("db", "previous"), (SENTINEL + "seed").encode())
        with self.assertRaises(keyturn.NotReadyError):
            self.engine.read_secret("db", "PENDING")
        status = self.engine.secret_status("db")
        self.assertEqual(status["state"], "idle")
        self.assertEqual(status["current"]["version"], version)
        self.assertEqual(status["rotations"], 1)
        self.assertEqual([s["id"] for s in self.engine.secret_status()], ["db"])

    def test_one_function_per_step_and_bytes_values(self):
        binary = b"\x00\xff" + SENTINEL.encode()
        self.engine.rotation_steps("steps", create=lambda r: binary, set=lambda r: None,
                                   test=lambda r: None, finish=lambda r: None)
        self.engine.add_secret(secret_spec())
        self.engine.start()  # no value at all: it rotates at once
        self.wait_rotated()
        self.assertEqual(self.engine.read_secret("db"), binary)
        with self.assertRaises(TypeError):
            self.engine.rotation_steps("other", create=len, set=len, test=len)

    def test_a_failing_step_is_retried_and_its_message_scrubbed(self):
        failures = []

        @self.engine.rotation_hook("steps")
        def hook(request):
            if request.step == "create":
                return self.new_value()
            if request.step == "test" and len(failures) < 2:
                failures.append(request.attempt)
                # Quotes the value it was given: it must not get out.
                raise keyturn.StepFailed(f"login refused for {request.pending.value}", 0.01)
            if request.step == "set" and request.attempt == 1 and not failures:
                raise RuntimeError(f"boom with {request.current.value}")
            return None

        self.engine.add_secret(secret_spec(retry={"backoff": {"initial": 0.05, "max": 0.2},
                                                  "max_attempts": 10}))
        self.engine.seed_secret("db", SENTINEL + "seed")
        self.engine.start()
        version = self.engine.rotate("db")
        failed = self.events.wait_for(lambda e: e.type == "rotation_failed", TIMEOUT)
        self.assertEqual(failed.get("step"), "set")
        self.assertIn("RuntimeError: boom with [secret", failed.get("error"))
        self.wait_rotated(version)
        self.assertEqual(failures, [2, 3])
        self.assertEqual(self.engine.read_secret("db"), (SENTINEL + "1").encode())

    def test_manual_completion_from_another_thread(self):
        @self.engine.rotation_hook("steps", manual=True)
        def hook(request, completion):
            value = self.new_value() if request.step == "create" else None
            threading.Timer(0.01, completion.succeed, args=(value,)).start()

        self.engine.add_secret(secret_spec())
        self.engine.start()
        self.wait_rotated()
        self.assertEqual(self.engine.read_secret("db"), (SENTINEL + "1").encode())

    def test_an_exec_hook_runs_a_program(self):
        with tempfile.TemporaryDirectory() as tmp:
            target = os.path.join(tmp, "target")
            script = os.path.join(tmp, "rotate.py")
            with open(script, "w") as f:
                f.write(f"""import json, sys
r = json.load(sys.stdin)
if r["step"] == "create":
    print(json.dumps({{"value": "{SENTINEL}exec-" + r["version"]}}))
else:
    if r["step"] == "set":
        open({target!r}, "w").write(r["pending"]["value"])
    print("{{}}")
""")
            store = os.path.join(tmp, "store.json")
            self.engine.add_secret({"id": "api", "store": {"type": "file", "path": store},
                                    "hook": {"type": "exec",
                                             "command": [sys.executable, script]}})
            self.engine.start()
            event = self.wait_rotated()
            value = self.engine.read_secret("api")
            self.assertEqual(value, f"{SENTINEL}exec-{event.get('version')}".encode())
            with open(target) as f:
                self.assertEqual(f.read().encode(), value)
            self.assertEqual(stat.S_IMODE(os.stat(store).st_mode), 0o600)

    def test_malformed_input_names_what_is_wrong(self):
        with self.assertRaises(keyturn.ConfigError) as cm:
            self.engine.add_secret({"id": "db", "hook": {"type": "exec", "command": "x"}})
        self.assertIn("hook.command", str(cm.exception))
        with self.assertRaises(keyturn.ConfigError):
            self.engine.add_secret("{not json")
        with self.assertRaises(keyturn.ConfigError) as cm:
            self.engine.add_secret({"id": "bad id", "hook": {"type": "hook", "name": "x"}})
        self.assertIn("id: id may contain only", str(cm.exception))
        with self.assertRaises(keyturn.NotFoundError):
            self.engine.rotate("missing")
        self.engine.add_secret(secret_spec())
        with self.assertRaises(keyturn.StateError):
            self.engine.rotate("db")  # not started
        with self.assertRaises(keyturn.InvalidArgumentError):
            self.engine.read_secret("db", "LATEST")
        with self.assertRaises(keyturn.NotFoundError):
            self.engine.start()  # hook "steps" is not registered
        with self.assertRaises(keyturn.InvalidArgumentError):
            self.engine.seed_secret("db", b"")


if __name__ == "__main__":
    unittest.main()
