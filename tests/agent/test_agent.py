"""The `keyturn` command: the agent and its client commands, run as processes.

The binary comes from KEYTURN_BIN. Hooks are small Python programs written into a
temporary directory; every value they hand out starts with "kt-secret-", so that a
value reaching a log, a status answer or a table is easy to recognise. Every wait is
bounded by a deadline.
"""

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

KEYTURN = os.environ.get("KEYTURN_BIN", "")
SECRET_MARK = "kt-secret-"
VERSION_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]+$")

# Answers a refresh with a new value; "expires_in" comes from the credential's
# metadata (3 s by default). Each credential counts its refreshes in a file.
ISSUER = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    request = json.load(sys.stdin)
    name = request["credential"]
    counter = os.path.join(here, "count-" + name)
    n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    with open(counter + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(counter + ".tmp", counter)
    ttl = float(request.get("metadata", {{}}).get("expires_in", "3"))
    print(json.dumps({{"value": "kt-secret-AGENT-%s-%d" % (name, n), "expires_in": ttl}}))
    """)

# Rotates a secret held by a "target system": a file the set step writes and the test
# step checks.
ROTATOR = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    request = json.load(sys.stdin)
    target = os.path.join(here, "target-" + request["secret"])
    step = request["step"]
    if step == "create":
        print(json.dumps({{"value": "kt-secret-ROT-" + request["version"]}}))
    elif step == "set":
        with open(target + ".tmp", "w") as f:
            f.write(request["pending"]["value"])
        os.replace(target + ".tmp", target)
        print("{{}}")
    elif step == "test":
        held = open(target).read() if os.path.exists(target) else None
        if held == request["pending"]["value"]:
            print("{{}}")
        else:
            print(json.dumps({{"error": "the target does not hold the pending value"}}))
    else:
        print("{{}}")
    """)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)


def read_or_none(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def keyturn(*args, timeout=30):
    return subprocess.run([KEYTURN, *args], capture_output=True, text=True, timeout=timeout)


class Sandbox:
    """A temporary directory with the hook programs and a configuration."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="kt-agent-")
        self.path = self._dir.name
        self.issuer = self._program("issue.py", ISSUER)
        self.rotator = self._program("rotate.py", ROTATOR)
        self.socket = self.file("agent.sock")
        self.config_path = self.file("keyturn.json")

    def _program(self, name, text):
        path = self.file(name)
        with open(path, "w") as f:
            f.write(text.format(python=sys.executable))
        os.chmod(path, 0o755)
        return path

    def file(self, name):
        return os.path.join(self.path, name)

    def credential(self, id, expires_in="3"):
        return {"id": id, "provider": {"type": "exec", "command": [self.issuer]},
                "metadata": {"expires_in": expires_in}}

    def secret(self, id):
        return {"id": id, "hook": {"type": "exec", "command": [self.rotator]},
                "store": {"type": "file", "path": self.file(id + ".store.json")}}

    def standard_config(self):
        return {
            "engine": {"drain_timeout": "2s"},
            "credentials": [self.credential("api"), self.credential("slow", "600")],
            "secrets": [self.secret("db")],
            "agent": {"log_level": "info", "sinks": [
                {"credential": "api", "path": self.file("token"), "mode": "0640"},
                {"secret": "db", "path": self.file("db-password"), "label": "CURRENT"},
            ]},
        }

    def write_config(self, config):
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        with open(self.config_path + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.config_path + ".tmp", self.config_path)

    def count(self, credential):
        text = read_or_none(self.file("count-" + credential))
        return int(text) if text else 0

    def cleanup(self):
        # A hook program started just before its agent was killed may still write
        # its counter for a moment.
        deadline = time.monotonic() + 5
        while os.path.exists(self.path) and time.monotonic() < deadline:
            shutil.rmtree(self.path, ignore_errors=True)
            time.sleep(0.05)
        self._dir.cleanup()


class Agent:
    """A `keyturn run` process whose standard error goes to a file."""

    def __init__(self, sandbox, log_name="agent.log"):
        self.sandbox = sandbox
        self.log_path = sandbox.file(log_name)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [KEYTURN, "run", "--config", sandbox.config_path, "--socket", sandbox.socket],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def wait_ready(self):
        def answers():
            if self.process.poll() is not None:
                raise AssertionError("the agent exited with %s:\n%s" %
                                     (self.process.returncode, self.log()))
            return keyturn("status", "--socket", self.sandbox.socket).returncode == 0
        wait_until(answers, 15, "the agent to answer on its socket")
        return self

    def log(self):
        return read_or_none(self.log_path) or ""

    def ask(self, *args):
        return keyturn(*args, "--socket", self.sandbox.socket)

    def status(self):
        result = self.ask("status", "--json")
        if result.returncode != 0:
            raise AssertionError("status failed: " + result.stderr)
        return json.loads(result.stdout)

    def signal(self, signo):
        self.process.send_signal(signo)

    def stop(self, timeout=20):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


class AgentTestCase(unittest.TestCase):
    def setUp(self):
        if not KEYTURN:
            self.skipTest("KEYTURN_BIN is not set")
        self.sandbox = Sandbox()
        self.addCleanup(self.sandbox.cleanup)
        self.agents = []

    def tearDown(self):
        stopped = [agent.stop() for agent in self.agents if agent.process.poll() is None]
        for agent in self.agents:
            # No value ever reaches the agent's log.
            self.assertNotIn(SECRET_MARK, agent.log())
        # Every agent still running stops cleanly (under sanitizers: without a report).
        self.assertEqual(stopped, [0] * len(stopped), "\n".join(a.log() for a in self.agents))

    def start_agent(self, config=None, log_name="agent.log"):
        self.sandbox.write_config(config or self.sandbox.standard_config())
        agent = Agent(self.sandbox, log_name)
        self.agents.append(agent)
        return agent.wait_ready()


class HelpAndUsage(AgentTestCase):
    def test_every_command_has_help_with_exit_codes(self):
        for command in ["run", "status", "refresh", "rotate", "validate"]:
            with self.subTest(command=command):
                result = keyturn(command, "--help")
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn("Usage: keyturn " + command, result.stdout)
                self.assertIn("Exit codes", result.stdout)
                self.assertIn("4  agent not reachable", result.stdout)
        result = keyturn("--help")
        self.assertEqual(result.returncode, 0)
        for command in ["run", "status", "refresh", "rotate", "validate"]:
            self.assertIn(command, result.stdout)

    def test_usage_errors_exit_2(self):
        for args in [["frobnicate"], ["run"], ["validate"], ["refresh"], ["rotate", "a", "b"],
                     ["status", "--colour"], ["run", "--config"]]:
            with self.subTest(args=args):
                result = keyturn(*args)
                self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(subprocess.run([KEYTURN], capture_output=True).returncode, 2)

    def test_client_without_agent_exits_4(self):
        missing = self.sandbox.file("nobody.sock")
        for args in [["status"], ["refresh", "api"], ["rotate", "db"]]:
            with self.subTest(args=args):
                result = keyturn(*args, "--socket", missing)
                self.assertEqual(result.returncode, 4, result.stderr)
                self.assertIn(missing, result.stderr)


class Validate(AgentTestCase):
    def test_valid_configuration_is_counted_and_touches_nothing(self):
        self.sandbox.write_config(self.sandbox.standard_config())
        result = keyturn("validate", "--config", self.sandbox.config_path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(),
                         "configuration is valid: 2 credential(s), 1 secret(s)")
        # No hook ran and no store was opened.
        self.assertEqual(self.sandbox.count("api"), 0)
        self.assertFalse(os.path.exists(self.sandbox.file("db.store.json")))
        self.assertFalse(os.path.exists(self.sandbox.file("token")))

    def test_every_mistake_is_reported_with_its_path(self):
        config = self.sandbox.standard_config()
        config["credentials"][0]["provider"] = {"type": "hook", "name": "mint"}
        config["credentials"][1]["policy"] = {"jitter": 7}
        config["secrets"][0]["hooks"] = {"create": {"type": "hook", "name": "x"}}
        del config["secrets"][0]["hook"]
        config["agent"]["colour"] = "blue"
        config["agent"]["sinks"].append({"credential": "nope", "path": "relative/file"})
        config["agent"]["sinks"][1]["mode"] = "rw-r-----"
        self.sandbox.write_config(config)

        result = keyturn("validate", "--config", self.sandbox.config_path)
        self.assertEqual(result.returncode, 3, result.stdout)
        for expected in [
            'credentials[0].provider.type: the agent runs exec hooks only',
            'credentials[1].policy.jitter: expected',
            'secrets[0].hooks.set: is required',
            'secrets[0].hooks.create.type: the agent runs exec hooks only',
            'agent.colour: unknown key',
            'agent.sinks[1].mode: expected an octal string like "0600"',
            'agent.sinks[2].credential: no credential "nope"',
            'agent.sinks[2].path: expected an absolute path',
        ]:
            self.assertIn(expected, result.stderr)

    def test_malformed_and_missing_files_are_invalid(self):
        self.sandbox.write_config('{"credentials": [')
        result = keyturn("validate", "--config", self.sandbox.config_path)
        self.assertEqual(result.returncode, 3)
        self.assertIn("not valid JSON", result.stderr)
        result = keyturn("validate", "--config", self.sandbox.file("absent.json"))
        self.assertEqual(result.returncode, 3)
        self.assertIn("cannot read", result.stderr)

    def test_run_refuses_an_invalid_configuration(self):
        config = self.sandbox.standard_config()
        config["credentials"][0]["provider"] = {"type": "hook", "name": "mint"}
        self.sandbox.write_config(config)
        result = keyturn("run", "--config", self.sandbox.config_path,
                         "--socket", self.sandbox.socket, timeout=15)
        self.assertEqual(result.returncode, 3)
        self.assertIn("credentials[0].provider.type", result.stderr)
        self.assertIn("exec", result.stderr)
        self.assertFalse(os.path.exists(self.sandbox.socket))


class RunningAgent(AgentTestCase):
    def test_credential_sink_has_its_mode_and_follows_refreshes(self):
        agent = self.start_agent()
        token = self.sandbox.file("token")
        first = wait_until(lambda: read_or_none(token), 10, "the token sink")
        self.assertRegex(first, r"^kt-secret-AGENT-api-\d+$")
        self.assertEqual(stat.S_IMODE(os.stat(token).st_mode), 0o640)

        second = wait_until(lambda: (read_or_none(token) or first) != first and read_or_none(token),
                            10, "the token sink to follow a refresh")
        self.assertRegex(second, r"^kt-secret-AGENT-api-\d+$")
        self.assertEqual(stat.S_IMODE(os.stat(token).st_mode), 0o640)
        # No temporary file is left beside the sink.
        self.assertEqual([n for n in os.listdir(self.sandbox.path) if ".tmp." in n], [])

        st = os.stat(self.sandbox.socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertIsNone(agent.process.poll())

    def test_status_shows_states_and_never_values(self):
        agent = self.start_agent()
        wait_until(lambda: read_or_none(self.sandbox.file("db-password")), 10,
                   "the first rotation of db")
        raw = agent.ask("status", "--json")
        self.assertEqual(raw.returncode, 0, raw.stderr)
        self.assertNotIn(SECRET_MARK, raw.stdout)
        status = json.loads(raw.stdout)
        self.assertTrue(status["ok"])
        self.assertEqual(sorted(c["id"] for c in status["credentials"]), ["api", "slow"])
        self.assertEqual([s["id"] for s in status["secrets"]], ["db"])

        table = agent.ask("status")
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertNotIn(SECRET_MARK, table.stdout)
        for word in ["CREDENTIAL", "NEXT REFRESH", "SECRET", "CURRENT VERSION", "api", "slow",
                     "db", status["secrets"][0]["current"]["version"]]:
            self.assertIn(word, table.stdout)

    def test_refresh_and_unknown_ids(self):
        agent = self.start_agent()
        # A refresh asked for while one is in flight joins it: wait until the first
        # one is published.
        def slow_version():
            return {c["id"]: c["version"] for c in agent.status()["credentials"]}["slow"]
        wait_until(lambda: slow_version() == 1, 10, "the first refresh of slow")
        result = agent.ask("refresh", "slow")
        self.assertEqual(result.returncode, 0, result.stderr)
        wait_until(lambda: slow_version() == 2, 10, "the manual refresh of slow")
        self.assertEqual(self.sandbox.count("slow"), 2)

        for args in [["refresh", "nope"], ["rotate", "nope"], ["rotate", "api"],
                     ["refresh", "db"]]:
            with self.subTest(args=args):
                result = agent.ask(*args)
                self.assertEqual(result.returncode, 5, result.stderr)
                self.assertIn('"%s"' % args[1], result.stderr)

    def test_rotate_prints_the_version_and_the_sink_follows(self):
        agent = self.start_agent()
        sink = self.sandbox.file("db-password")
        first = wait_until(lambda: read_or_none(sink), 10, "the first rotation of db")
        self.assertEqual(stat.S_IMODE(os.stat(sink).st_mode), 0o600)

        result = agent.ask("rotate", "db")
        self.assertEqual(result.returncode, 0, result.stderr)
        version = result.stdout.strip()
        self.assertRegex(version, VERSION_ID)
        expected = "kt-secret-ROT-" + version
        self.assertNotEqual(first, expected)
        wait_until(lambda: read_or_none(sink) == expected, 15, "the sink to hold the new value")
        self.assertEqual(read_or_none(self.sandbox.file("target-db")), expected)
        current = agent.status()["secrets"][0]["current"]["version"]
        self.assertEqual(current, version)

    def test_sighup_with_an_invalid_file_keeps_the_running_configuration(self):
        agent = self.start_agent()
        token = self.sandbox.file("token")
        wait_until(lambda: read_or_none(token), 10, "the token sink")

        broken = self.sandbox.standard_config()
        broken["agent"]["sinks"][0]["mode"] = "rw"
        broken["credentials"].append({"id": "extra", "provider": {"type": "hook", "name": "x"}})
        self.sandbox.write_config(broken)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: "agent.sinks[0].mode" in agent.log(), 10, "the reload error")
        self.assertIn("credentials[2].provider.type", agent.log())
        self.assertIn("the running configuration stays", agent.log())

        # Still running, still refreshing the old credential into its sink.
        before = read_or_none(token)
        wait_until(lambda: read_or_none(token) not in (None, before), 10,
                   "a refresh after the failed reload")
        self.assertIsNone(agent.process.poll())
        self.assertEqual(sorted(c["id"] for c in agent.status()["credentials"]), ["api", "slow"])

    def test_sighup_applies_added_removed_and_changed_specs(self):
        agent = self.start_agent()
        wait_until(lambda: self.sandbox.count("slow") >= 1, 10, "the first refresh of slow")

        config = self.sandbox.standard_config()
        config["credentials"] = [self.sandbox.credential("api"),
                                 self.sandbox.credential("api2", "600")]
        config["agent"]["sinks"].append(
            {"credential": "api2", "path": self.sandbox.file("token2"), "mode": "0600"})
        self.sandbox.write_config(config)
        agent.signal(signal.SIGHUP)

        token2 = self.sandbox.file("token2")
        value = wait_until(lambda: read_or_none(token2), 10, "the new credential's sink")
        self.assertRegex(value, r"^kt-secret-AGENT-api2-1$")
        self.assertEqual(stat.S_IMODE(os.stat(token2).st_mode), 0o600)
        ids = sorted(c["id"] for c in agent.status()["credentials"])
        self.assertEqual(ids, ["api", "api2"])
        self.assertIn("1 added, 1 removed", agent.log())

    def test_clients_find_the_socket_in_the_configuration_file(self):
        config = self.sandbox.standard_config()
        config["agent"]["socket"] = self.sandbox.socket
        self.start_agent(config)
        path = self.sandbox.config_path
        result = keyturn("status", "--json", "--config", path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([c["id"] for c in json.loads(result.stdout)["credentials"]],
                         ["api", "slow"])
        self.assertEqual(keyturn("refresh", "slow", "--config", path).returncode, 0)
        self.assertEqual(keyturn("rotate", "db", "--config", path).returncode, 0)

        both = keyturn("status", "--config", path, "--socket", self.sandbox.socket)
        self.assertEqual(both.returncode, 2, both.stderr)
        self.assertIn("give --socket or --config, not both", both.stderr)

        elsewhere = dict(config, agent=dict(config["agent"],
                                            socket=self.sandbox.file("other.sock")))
        other_path = self.sandbox.file("other.json")
        with open(other_path, "w") as f:
            json.dump(elsewhere, f)
        result = keyturn("status", "--config", other_path)
        self.assertEqual(result.returncode, 4, result.stderr)
        self.assertIn(self.sandbox.file("other.sock"), result.stderr)

        with open(other_path, "w") as f:
            json.dump({"engine": {"threads": 0}}, f)
        result = keyturn("refresh", "api", "--config", other_path)
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn("engine.threads: expected a whole number from 1 to 64", result.stderr)

    def test_sigterm_stops_cleanly_and_removes_the_socket(self):
        agent = self.start_agent()
        self.assertTrue(os.path.exists(self.sandbox.socket))
        self.assertEqual(agent.stop(), 0)
        self.assertFalse(os.path.exists(self.sandbox.socket))
        self.assertIn("agent stopped", agent.log())
        self.assertEqual(agent.ask("status").returncode, 4)

    def test_a_second_agent_on_the_same_socket_is_refused(self):
        agent = self.start_agent()
        second = keyturn("run", "--config", self.sandbox.config_path,
                         "--socket", self.sandbox.socket, timeout=15)
        self.assertEqual(second.returncode, 1)
        self.assertIn("another agent is listening", second.stderr)
        self.assertEqual(agent.ask("status").returncode, 0)

    def test_restart_after_sigkill_replaces_the_stale_socket(self):
        agent = self.start_agent()
        sink = self.sandbox.file("db-password")
        wait_until(lambda: read_or_none(sink), 10, "the first rotation of db")
        agent.process.kill()
        agent.process.wait(timeout=10)
        self.assertTrue(os.path.exists(self.sandbox.socket))

        again = self.start_agent(log_name="agent2.log")
        self.assertIn("removed the stale socket", again.log())
        # The secret's store kept its value: no new rotation was needed at start.
        status = again.status()
        self.assertEqual(status["secrets"][0]["rotations"], 1)
        self.assertEqual(stat.S_IMODE(os.stat(self.sandbox.socket).st_mode), 0o600)

    def test_the_socket_refuses_other_users(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to connect as another user")
        try:
            import pwd
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user 'nobody'")
        agent = self.start_agent()
        self.assertEqual(stat.S_IMODE(os.stat(self.sandbox.socket).st_mode), 0o600)

        def connect_as_nobody():
            # A child that drops to 'nobody' and reports what connect() and a status
            # request gave it: "refused" (EACCES), "closed" (accepted, then dropped
            # without an answer) or "answered".
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                outcome = b"error"
                try:
                    os.setgid(nobody.pw_gid)
                    os.setuid(nobody.pw_uid)
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.settimeout(5)
                        try:
                            s.connect(self.sandbox.socket)
                        except PermissionError:
                            outcome = b"refused"
                        else:
                            # The agent may drop the connection before the request is
                            # written: a broken pipe or a reset is "closed" too.
                            try:
                                s.sendall(b'{"op": "status"}\n')
                                outcome = b"answered" if s.recv(4096) else b"closed"
                            except (ConnectionError, socket.timeout):
                                outcome = b"closed"
                finally:
                    os.write(write_end, outcome)
                    os._exit(0)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as r:
                outcome = r.read().decode()
            os.waitpid(pid, 0)
            return outcome

        # The socket's mode keeps another user out at connect().
        os.chmod(self.sandbox.path, 0o755)
        self.assertEqual(connect_as_nobody(), "refused")
        # A socket opened up by mistake still answers only its owner.
        os.chmod(self.sandbox.socket, 0o666)
        self.assertEqual(connect_as_nobody(), "closed")
        wait_until(lambda: "refused a client with uid %d" % nobody.pw_uid in agent.log(), 10,
                   "the agent to log the refused client")
        # The owner is still served.
        self.assertEqual(agent.ask("status").returncode, 0)

    def test_malformed_requests_get_error_answers(self):
        agent = self.start_agent()

        def exchange(payload):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(self.sandbox.socket)
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            return json.loads(data)

        for payload in [b"not json\n", b"[1, 2]\n", b'{"op": "explode"}\n',
                        b'{"op": "refresh"}\n', b'{"op": "rotate", "id": 7}\n']:
            with self.subTest(payload=payload):
                answer = exchange(payload)
                self.assertFalse(answer["ok"])
                self.assertTrue(answer["error"])
        answer = exchange(b"x" * (70 * 1024))
        self.assertFalse(answer["ok"])
        self.assertIn("longer than", answer["error"])
        self.assertTrue(exchange(b'{"op": "status"}')["ok"])
        self.assertIsNone(agent.process.poll())


if __name__ == "__main__":
    unittest.main()
