"""Tests of the PostgreSQL rotation example against a real, throwaway PostgreSQL server.

Run from the repository root (after scripts/setup.sh):
    /usr/bin/python3 -m unittest discover -s tests/postgres -v

The server logs every statement and connection. Every password a test uses starts with
"kt-secret-PG-"; after each test, none of them may appear in the server's log.
"""

import base64
import json
import os
import secrets
import string
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(REPO, "examples", "postgres_rotation")
EXEC_HOOK = os.path.join(EXAMPLE, "exec_hook.py")
sys.path[:0] = [os.path.join(REPO, "tests", "support"), EXAMPLE]

# pg_cluster first: when psycopg2 is missing, its error says how to install it.
from pg_cluster import PgCluster, free_port  # noqa: E402
import pg_steps  # noqa: E402

VERSION = "20261203T182301Z-3f9a1c"
URL_SAFE = set(string.ascii_letters + string.digits + "-_")


def read_proc_file(pid, name):
    """/proc/<pid>/<name> of a process that is blocked on its stdin. Popen returns while
    the kernel may still be laying out the new program's arguments, when the file reads
    empty for a moment, so this waits (at most 5 s) for it to fill."""
    deadline = time.monotonic() + 5
    while True:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            content = f.read()
        if content or time.monotonic() > deadline:
            return content
        time.sleep(0.001)


class PostgresRotationSteps(unittest.TestCase):
    """One server for the class; each test works on roles of its own."""

    @classmethod
    def setUpClass(cls):
        # No skip when PostgreSQL is missing: PgCluster fails, naming scripts/setup.sh.
        cls.pg = PgCluster()
        cls.pg.start()
        cls.addClassCleanup(cls.pg.stop)

    def setUp(self):
        self.used = []  # every password this test handled

    def tearDown(self):
        log = self.pg.read_log()
        leaked = [i for i, password in enumerate(self.used) if password in log]
        self.assertEqual([], leaked, "passwords (by index in self.used) in the server log")

    # -- helpers -------------------------------------------------------------------------

    def password(self, label):
        """A recognisable password, remembered so tearDown looks for it in the log."""
        return self.remember(f"kt-secret-PG-{label}-{secrets.token_hex(2)}")

    def remember(self, password):
        self.used.append(password)
        return password

    def new_role(self):
        """A fresh LOGIN role and its initial password."""
        role = f"app_{secrets.token_hex(4)}"
        initial = self.password("initial")
        self.pg.create_role(role, initial)
        return role, initial

    def request(self, step, role, current=None, previous=None, pending=None, port=None):
        def slot(version, value):
            return None if value is None else {"version": version, "value": value}

        return {
            "secret": "db-app", "step": step, "version": VERSION, "attempt": 1,
            "current": slot("20261103T091500Z-77aa01", current),
            "previous": slot("20261004T120000Z-0b1c2d", previous),
            "pending": slot(VERSION, pending),
            "metadata": {"host": "127.0.0.1", "port": str(port or self.pg.port),
                         "dbname": "postgres", "role": role},
        }

    def rotate_to_new_password(self, role, initial):
        new = self.remember(pg_steps.handle(self.request("create", role))["value"])
        self.assertEqual({}, pg_steps.handle(self.request("set", role, initial, pending=new)))
        return new

    def assertFailsWithoutSecrets(self, result, step, *values):
        self.assertIn("error", result)
        self.assertTrue(result["error"].startswith(f"{step}: "), result["error"])
        for value in values:
            self.assertNotIn(value, result["error"])

    # -- create ----------------------------------------------------------------------------

    def test_create_returns_a_fresh_strong_password_each_time(self):
        first = pg_steps.handle(self.request("create", "app"))
        second = pg_steps.handle(self.request("create", "app"))

        self.assertEqual({"value"}, set(first))
        self.assertGreaterEqual(len(first["value"]), 43)
        self.assertLessEqual(set(first["value"]), URL_SAFE)
        self.assertNotEqual(first["value"], second["value"])

    def test_create_again_for_the_same_version_returns_the_pending_value(self):
        pending = self.password("pending")
        request = self.request("create", "app", pending=pending)

        self.assertEqual({"value": pending}, pg_steps.handle(request))
        request["pending"]["version"] = "20261101T000000Z-000000"
        self.assertNotEqual(pending, pg_steps.handle(request)["value"])

    # -- set -------------------------------------------------------------------------------

    def test_set_changes_the_roles_password_through_a_scram_verifier(self):
        role, initial = self.new_role()

        new = self.rotate_to_new_password(role, initial)

        self.assertTrue(self.pg.can_login(role, new))
        self.assertFalse(self.pg.can_login(role, initial))
        # The statement was logged, with a verifier where a password would have been.
        self.assertIn(f"ALTER ROLE \"{role}\" PASSWORD 'SCRAM-SHA-256$", self.pg.read_log())

    def test_set_run_again_after_success_changes_nothing(self):
        role, initial = self.new_role()
        new = self.rotate_to_new_password(role, initial)

        again = pg_steps.handle(self.request("set", role, initial, pending=new))

        self.assertEqual({}, again)
        self.assertTrue(self.pg.can_login(role, new))
        self.assertEqual(1, self.pg.read_log().count(f"ALTER ROLE \"{role}\""))

    def test_set_logs_in_with_the_previous_password_when_current_is_refused(self):
        role, initial = self.new_role()
        never_set = self.password("never-set")
        new = self.password("new")

        result = pg_steps.handle(self.request("set", role, current=never_set,
                                              previous=initial, pending=new))

        self.assertEqual({}, result)
        self.assertTrue(self.pg.can_login(role, new))

    def test_set_fails_when_every_password_is_refused_and_names_none(self):
        role, initial = self.new_role()
        wrong, other, new = self.password("wrong"), self.password("other"), self.password("new")

        result = pg_steps.handle(self.request("set", role, current=wrong, previous=other,
                                              pending=new))

        self.assertFailsWithoutSecrets(result, "set", wrong, other, new, initial)
        self.assertIn(role, result["error"])
        self.assertTrue(self.pg.can_login(role, initial))

    def test_set_accepts_values_in_base64(self):
        role, initial = self.new_role()
        new = self.password("new")
        request = self.request("set", role, initial, pending=new)
        for name in ("current", "pending"):
            value = request[name].pop("value")
            request[name]["value_base64"] = base64.b64encode(value.encode()).decode()

        self.assertEqual({}, pg_steps.handle(request))
        self.assertTrue(self.pg.can_login(role, new))

    def test_an_unreachable_server_is_a_failure_worth_retrying(self):
        initial, new = self.password("initial"), self.password("new")

        result = pg_steps.handle(self.request("set", "app", initial, pending=new,
                                              port=free_port()))

        self.assertFailsWithoutSecrets(result, "set", initial, new)
        self.assertIn("Connection refused", result["error"])
        self.assertEqual(pg_steps.RETRY_AFTER, result["retry_after"])

    # -- test and finish -------------------------------------------------------------------

    def test_test_step_logs_in_with_the_pending_password(self):
        role, initial = self.new_role()
        new = self.rotate_to_new_password(role, initial)

        self.assertEqual({}, pg_steps.handle(self.request("test", role, initial, pending=new)))

    def test_test_step_with_a_wrong_pending_password_fails_and_names_none(self):
        role, initial = self.new_role()
        wrong = self.password("wrong")

        result = pg_steps.handle(self.request("test", role, initial, pending=wrong))

        self.assertFailsWithoutSecrets(result, "test", initial, wrong)
        self.assertIn("cannot log in with the pending password", result["error"])

    def test_finish_checks_the_new_password_and_can_run_again_after_promotion(self):
        role, initial = self.new_role()
        new = self.rotate_to_new_password(role, initial)

        self.assertEqual({}, pg_steps.handle(self.request("finish", role, initial,
                                                          pending=new)))
        # A re-run after keyturn promoted the pending value: it is current now.
        self.assertEqual({}, pg_steps.handle(self.request("finish", role, new, initial)))

    def test_errors_cut_out_a_value_even_when_the_server_quotes_it(self):
        role, initial = self.new_role()
        # A pending value equal to the role name: the server's refusal quotes the name.
        result = pg_steps.handle(self.request("test", role, initial, pending=role))

        self.assertFailsWithoutSecrets(result, "test", role, initial)
        self.assertIn(pg_steps.REDACTED, result["error"])

    def test_an_empty_password_is_refused_before_libpq_could_fall_back_to_the_environment(self):
        role, initial = self.new_role()

        result = pg_steps.handle(self.request("set", role, initial, pending=""))

        self.assertEqual({"error": "set: pending value is empty"}, result)

    def test_an_unknown_step_is_refused(self):
        result = pg_steps.handle(self.request("rewind", "app"))

        self.assertEqual("rewind: unknown step 'rewind'", result["error"])

    # -- the exec hook ---------------------------------------------------------------------

    def run_exec_hook(self, request):
        """Runs exec_hook.py as keyturn would, checking while it waits on stdin that no
        password it is about to receive is in its command line or environment."""
        with subprocess.Popen([sys.executable, EXEC_HOOK], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as hook:
            try:
                self.assertNoPasswordIn(hook.pid, "cmdline")
                self.assertNoPasswordIn(hook.pid, "environ")
                out, err = hook.communicate(json.dumps(request).encode(), timeout=60)
            except BaseException:
                hook.kill()
                raise
        self.assertEqual(0, hook.returncode)
        self.assertEqual(b"", err)
        return json.loads(out)

    def assertNoPasswordIn(self, pid, name):
        content = read_proc_file(pid, name)
        self.assertTrue(content, f"/proc/{pid}/{name} stayed empty")
        for password in self.used:
            self.assertNotIn(password.encode(), content, name)

    def test_exec_hook_rotates_end_to_end_with_passwords_only_on_stdin(self):
        role, initial = self.new_role()

        created = self.run_exec_hook(self.request("create", role, initial))
        new = self.remember(created["value"])
        for step in ("set", "test", "finish"):
            self.assertEqual({}, self.run_exec_hook(self.request(step, role, initial,
                                                                 pending=new)), step)

        self.assertTrue(self.pg.can_login(role, new))
        self.assertFalse(self.pg.can_login(role, initial))


if __name__ == "__main__":
    unittest.main()
