"""The keyturn agent rotating a real PostgreSQL role's password, killed with SIGKILL in
the middle of each step in turn, then started again.

Each round asks the running agent to rotate, waits until the hook has done a step's work
(and is holding its answer back), kills the agent and the hook with SIGKILL, and starts
the agent again. The journal must bring the rotation to its end with the same version id,
the role must log in with the new password only, and no password may reach the server's
log or the agent's output.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "tests", "support")]

from pg_cluster import PgCluster  # noqa: E402

INITIAL = "kt-secret-PG-crash-initial-0c41"
TIMEOUT = 60.0


def wait_for(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class AgentKilledMidRotation(unittest.TestCase):
    def setUp(self):
        self.bin = os.environ.get("KEYTURN_BIN")
        if not self.bin:
            self.fail("KEYTURN_BIN must name the built keyturn command")
        self.pg = PgCluster()
        self.pg.start()
        self.addCleanup(self.pg.stop)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.dir = self.tmp.name
        self.store = os.path.join(self.dir, "db.json")
        self.socket = os.path.join(self.dir, "agent.sock")
        self.marker = os.path.join(self.dir, "paused")
        self.outputs = []
        self.pg.create_role("crash_app", INITIAL)
        seed = os.path.join(self.dir, "seed")
        fd = os.open(seed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(INITIAL + "\n")
        self.seed = seed

    def config(self, pause_step=None):
        params = self.pg.dsn_params()
        hook = {"type": "exec",
                "command": ["/usr/bin/python3", os.path.join(HERE, "crashing_hook.py")]}
        if pause_step:
            hook["env"] = {"KT_PAUSE_STEP": pause_step, "KT_PAUSE_MARKER": self.marker}
        path = os.path.join(self.dir, "config.json")
        with open(path, "w") as f:
            json.dump({
                "engine": {"hook_timeout": 150, "drain_timeout": 1},
                "secrets": [{
                    "id": "db", "hook": hook,
                    "store": {"type": "file", "path": self.store},
                    "seed_file": self.seed,
                    "retry": {"backoff": {"initial": 1, "max": 5}},
                    "metadata": {"host": params["host"], "port": str(params["port"]),
                                 "dbname": "postgres", "role": "crash_app"}}],
            }, f)
        return path

    def start_agent(self, pause_step=None):
        log = open(os.path.join(self.dir, f"agent-{len(self.outputs)}.log"), "w+")
        self.outputs.append(log)
        agent = subprocess.Popen([self.bin, "run", "--config", self.config(pause_step),
                                  "--socket", self.socket],
                                 stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: agent.poll() is None and agent.kill())
        wait_for(lambda: os.path.exists(self.socket) or agent.poll() is not None,
                 what="the agent's socket")
        self.assertIsNone(agent.poll(), self.read_outputs())
        return agent

    def read_outputs(self):
        text = ""
        for log in self.outputs:
            log.flush()
            log.seek(0)
            text += log.read()
        return text

    def cli(self, *args):
        return subprocess.run([self.bin, *args, "--socket", self.socket], capture_output=True,
                              text=True, timeout=30)

    def read_marker(self):
        """The paused hook's pid, once it has done its step's work."""
        try:
            with open(self.marker) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def stored(self):
        try:
            with open(self.store) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def test_sigkill_during_each_step_resumes_the_same_version(self):
        # A first agent seeds the secret and rotates once, so PREVIOUS exists too.
        agent = self.start_agent()
        first = self.cli("rotate", "db")
        self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
        wait_for(lambda: (self.stored() or {}).get("rotations", 0) >= 1,
                 what="the first rotation")
        agent.send_signal(signal.SIGTERM)
        self.assertEqual(agent.wait(timeout=30), 0, self.read_outputs())

        passwords = [INITIAL]
        for step in ("create", "set", "test", "finish"):
            with self.subTest(step=step):
                before = self.stored()
                passwords.append(before["current"]["value"])
                agent = self.start_agent(pause_step=step)
                rotate = self.cli("rotate", "db")
                self.assertEqual(rotate.returncode, 0, rotate.stdout + rotate.stderr)
                version = rotate.stdout.strip().split()[-1]
                hook_pid = int(wait_for(self.read_marker, what=f"step {step}"))
                os.kill(agent.pid, signal.SIGKILL)
                agent.wait(timeout=10)
                os.killpg(os.getpgid(hook_pid), signal.SIGKILL)
                os.unlink(self.marker)

                journal = self.stored()
                self.assertEqual(journal["rotation"]["version"], version)

                agent = self.start_agent()
                after = wait_for(lambda: (lambda s: s if s and "rotation" not in s and
                                          s["rotations"] == before["rotations"] + 1
                                          else None)(self.stored()),
                                 what=f"the rotation killed in {step} to finish")
                self.assertEqual(after["current"]["id"], version)
                self.assertEqual(after["past"][0]["id"], before["current"]["id"])
                new = after["current"]["value"]
                passwords.append(new)
                self.assertTrue(self.pg.can_login("crash_app", new))
                self.assertFalse(self.pg.can_login("crash_app", before["current"]["value"]))
                transitions = [e["transition"] for e in after["journal"]
                               if e["version"] == version]
                self.assertEqual(transitions.count("created"), 1, transitions)
                self.assertEqual(transitions[-1], "finished")
                agent.send_signal(signal.SIGTERM)
                self.assertEqual(agent.wait(timeout=30), 0, self.read_outputs())
                self.assertFalse(os.path.exists(self.socket))

        self.assertEqual(os.stat(self.store).st_mode & 0o777, 0o600)
        output = self.read_outputs()
        log = self.pg.read_log()
        for password in passwords:
            self.assertNotIn(password, output)
            self.assertNotIn(password, log)


if __name__ == "__main__":
    unittest.main()
