"""keyturn's OAuth2 provider against oidc-provider, started on 127.0.0.1.

oidc-provider rotates the refresh token on every use and revokes the whole grant when
a used one comes back, so one double use anywhere fails these tests. Access tokens
live 3 seconds; several credentials, each with its own grant, are refreshed for
hundreds of cycles in all while reader threads check that no read ever returns an
expired token. Halfway the engine is freed and a new one starts from the same file
stores: the rotated refresh tokens on disk must carry on without a single reuse.
"""

import json
import os
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "tests", "support"), os.path.join(REPO, "bindings", "python")]

import keyturn  # noqa: E402
from oidc_fixture import OidcServer  # noqa: E402

CREDENTIALS = int(os.environ.get("KEYTURN_OIDC_CREDENTIALS", "16"))
SECONDS = float(os.environ.get("KEYTURN_OIDC_SECONDS", "30"))


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class RefreshAgainstOidcProvider(unittest.TestCase):
    def setUp(self):
        self.server = OidcServer(access_token_ttl=3)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def spec(self, n, auth="basic"):
        """A credential with its own grant; auth is "basic" or "post" (the fixture's
        names), which keyturn calls "basic" and "body"."""
        seed = os.path.join(self.tmp.name, f"seed-{n}")
        tokens = self.server.first_tokens(auth=auth)
        write_private(seed, tokens["refresh_token"])
        client_id, client_secret = self.server.client(auth)
        secret_file = os.path.join(self.tmp.name, f"client-secret-{auth}")
        if not os.path.exists(secret_file):
            write_private(secret_file, client_secret)
        return {
            "id": f"api-{n}",
            "provider": {"type": "oauth2", "token_url": self.server.token_endpoint,
                         "client_id": client_id, "client_secret_file": secret_file,
                         "client_auth": "basic" if auth == "basic" else "body",
                         "timeouts": {"request": 5}},
            "store": {"type": "file", "path": os.path.join(self.tmp.name, f"api-{n}.json")},
            "seed": {"file": seed, "format": "refresh_token"},
            "policy": {"backoff": {"initial": 0.2, "max": 1}},
        }

    def run_engine(self, specs, seconds, refreshed, failures, bad_reads):
        engine = keyturn.Engine({"engine": {"threads": 2}})
        fresh_here = set()  # refreshed by this engine

        def on_event(e):
            if e.type == "refreshed":
                refreshed.append(e.credential)
                fresh_here.add(e.credential)
            elif e.type == "refresh_failed":
                failures.append(e.data)

        engine.subscribe(on_event)
        for s in specs:
            engine.add(s)
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                for s in specs:
                    try:
                        engine.read(s["id"])
                    except keyturn.NotReadyError:
                        pass
                    except keyturn.ExpiredError:
                        bad_reads.append(s["id"])
                time.sleep(0.005)

        with engine:
            # Readers start once this engine has refreshed every credential: a value
            # stored by the previous engine may have expired while none was running,
            # and reading it then rightly fails.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(fresh_here) < len(specs):
                time.sleep(0.05)
            readers = [threading.Thread(target=reader) for _ in range(2)]
            for t in readers:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in readers:
                t.join(timeout=10)
            statuses = [engine.status(s["id"]) for s in specs]
        return statuses

    def test_hundreds_of_rotations_without_a_single_reuse(self):
        specs = [self.spec(n, auth="basic" if n % 2 == 0 else "post") for n in range(CREDENTIALS)]
        refreshed, failures, bad_reads = [], [], []
        first = self.run_engine(specs, SECONDS / 2, refreshed, failures, bad_reads)
        for s in specs:  # the seed is read only while the store is empty
            os.unlink(s["seed"]["file"])
        second = self.run_engine(specs, SECONDS / 2, refreshed, failures, bad_reads)

        stats = self.server.stats()
        self.assertEqual(stats["invalid_grant"], 0, stats)
        self.assertEqual(stats["refresh_token_reuse"], 0, stats)
        self.assertEqual(stats["invalid_client"], 0, stats)
        self.assertEqual(failures, [])
        self.assertEqual(bad_reads, [])
        self.assertGreaterEqual(len(refreshed), CREDENTIALS * SECONDS / 2.2, len(refreshed))
        self.assertEqual(stats["refresh_grants"], len(refreshed))
        print(f"\n{len(refreshed)} refreshes of {CREDENTIALS} credentials, "
              f"{stats['invalid_grant']} invalid_grant, {len(bad_reads)} expired reads")
        for status in first + second:
            self.assertIn(status["state"], ("fresh", "refreshing"), status)
            self.assertTrue(status["has_refresh"])
        for s in specs:
            self.assertEqual(os.stat(s["store"]["path"]).st_mode & 0o777, 0o600)

    def test_a_reused_refresh_token_is_final_and_says_a_login_is_needed(self):
        spec = self.spec(0)
        tokens_file = spec["seed"]["file"]
        with open(tokens_file) as f:
            refresh = f.read().strip()
        self.server.refresh(refresh)  # used once outside keyturn: keyturn's use is a reuse
        events = []
        engine = keyturn.Engine()
        engine.subscribe(lambda e: events.append(e.data))
        engine.add(spec)
        with engine:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                    e["type"] == "refresh_failed" for e in events):
                time.sleep(0.05)
            time.sleep(1.5)  # no retry loop may follow
            status = engine.status("api-0")
        failed = [e for e in events if e["type"] == "refresh_failed"]
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["action"], "give_up")
        self.assertIn("invalid_grant", failed[0]["error"])
        self.assertIn("a new login is needed", failed[0]["error"])
        self.assertIn(self.server.token_endpoint.split("?")[0], failed[0]["error"])
        self.assertNotIn(refresh, json.dumps(events))
        self.assertEqual(status["state"], "failed")

    def test_server_down_retries_with_backoff_and_names_the_endpoint(self):
        spec = self.spec(0)
        self.server.stop()
        events = []
        engine = keyturn.Engine()
        engine.subscribe(lambda e: events.append(e.data))
        engine.add(spec)
        with engine:
            time.sleep(2.5)
        failed = [e for e in events if e["type"] == "refresh_failed"]
        # Backoff from 0.2 s doubling to 1 s: about 4 attempts in 2.5 s, never a burst.
        self.assertGreaterEqual(len(failed), 2, failed)
        self.assertLessEqual(len(failed), 6, failed)
        self.assertTrue(all(e["action"] == "retry" for e in failed))
        self.assertIn("127.0.0.1", failed[0]["error"])


if __name__ == "__main__":
    unittest.main()
