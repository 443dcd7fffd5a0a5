"""The PostgreSQL rotation driven through the Python binding, against a real server.

Runs examples/postgres_rotation/rotate_with_binding.py as a user would, then checks what
it cannot check itself: the store file's mode and content, the role's password on the
server, and that no password reached the server's log or the program's output.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(REPO, "examples", "postgres_rotation", "rotate_with_binding.py")
sys.path[:0] = [os.path.join(REPO, "tests", "support")]

from pg_cluster import PgCluster  # noqa: E402

INITIAL = "kt-secret-PG-binding-initial-71c0"


class RotationThroughTheBinding(unittest.TestCase):
    def test_three_rotations_and_a_restart(self):
        if not os.environ.get("KEYTURN_LIBRARY"):
            self.fail("KEYTURN_LIBRARY must name the built libkeyturn.so")
        with PgCluster() as pg, tempfile.TemporaryDirectory() as tmp:
            pg.create_role("binding_app", INITIAL)
            seed = os.path.join(tmp, "seed")
            fd = os.open(seed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(INITIAL + "\n")
            store = os.path.join(tmp, "store.json")
            params = pg.dsn_params()

            def run(rotations):
                return subprocess.run(
                    [sys.executable, EXAMPLE, "--host", params["host"], "--port",
                     str(params["port"]), "--role", "binding_app", "--store", store,
                     "--seed-file", seed, "--rotations", str(rotations)],
                    capture_output=True, text=True, timeout=180)

            first = run(2)
            self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
            self.assertEqual(os.stat(store).st_mode & 0o777, 0o600)
            with open(store) as f:
                state = json.load(f)
            current = state["current"]["value"]
            self.assertEqual(state["rotations"], 2)
            self.assertIsNone(state.get("pending"))
            self.assertTrue(pg.can_login("binding_app", current))
            self.assertFalse(pg.can_login("binding_app", INITIAL))

            # A second run starts from the store (the seed file is not read again).
            os.unlink(seed)
            second = run(1)
            self.assertEqual(second.returncode, 0, second.stdout + second.stderr)
            with open(store) as f:
                state = json.load(f)
            self.assertEqual(state["rotations"], 3)
            self.assertEqual(state["past"][0]["value"], current)
            self.assertTrue(pg.can_login("binding_app", state["current"]["value"]))
            self.assertFalse(pg.can_login("binding_app", current))

            passwords = [INITIAL, current, state["current"]["value"]]
            log = pg.read_log()
            for text in (log, first.stdout, first.stderr, second.stdout, second.stderr):
                for password in passwords:
                    self.assertNotIn(password, text)


if __name__ == "__main__":
    unittest.main()
