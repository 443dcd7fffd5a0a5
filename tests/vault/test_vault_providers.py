"""keyturn's Vault providers (vault_token, vault_lease) through the Python binding and
libkeyturn, against the Vault API test server of tests/support/vault_server.py on
127.0.0.1, with TTLs of a few seconds.

Every token, role id, secret id and lease the tests make is recognisable (it contains
SECRETTOKEN, or the server knows it); no log line, event or error may show one.
"""

import json
import logging
import os
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "bindings", "python"), os.path.join(REPO, "tests", "support")]

import keyturn  # noqa: E402
from test_certs import make_test_ca  # noqa: E402
from test_helpers import captured_logger, wait_for, write_private  # noqa: E402
from vault_server import VaultServer  # noqa: E402

MARKER = "SECRETTOKEN"
FAST_BACKOFF = {"initial": 0.2, "max": 1, "jitter": 0}


class VaultTestCase(unittest.TestCase):
    server_options = {}

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.vault = self.make_server(**self.server_options)
        self.events = []
        self.events_lock = threading.Lock()
        self.logger, self.lines = captured_logger(f"keyturn.test.{self.id()}")
        self.seen_values = []

    def make_server(self, **options):
        server = VaultServer(**options).start()
        self.addCleanup(server.stop)
        return server

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def token_file(self, token, name="token"):
        write_private(self.path(name), token)
        return self.path(name)

    def approle(self, token_ttl=3, token_max_ttl=60, name="app"):
        role_id, secret_id = self.vault.add_approle(
            name, token_ttl=token_ttl, token_max_ttl=token_max_ttl,
            role_id=f"role-{MARKER}-{name}", secret_id=f"secret-{MARKER}-{name}")
        write_private(self.path(f"{name}.role"), role_id)
        write_private(self.path(f"{name}.secret"), secret_id)
        return {"role_id_file": self.path(f"{name}.role"),
                "secret_id_file": self.path(f"{name}.secret")}

    def engine(self, *specs, drain=5):
        engine = keyturn.Engine({"engine": {"drain_timeout": drain}}, logger=self.logger)
        engine.set_log_level(logging.DEBUG)
        engine.subscribe(self.on_event)
        for spec in specs:
            spec.setdefault("policy", {"jitter": 0, "backoff": FAST_BACKOFF})
            engine.add(spec)
        return engine

    def on_event(self, event):
        with self.events_lock:
            self.events.append(event.data)

    def of_type(self, kind, credential=None):
        with self.events_lock:
            return [e for e in self.events if e["type"] == kind
                    and (credential is None or e["credential"] == credential)]

    def read(self, engine, cred):
        value = engine.read_text(cred)
        self.seen_values.append(value)
        return value

    def token_spec(self, cred="vt", **provider):
        spec = {"type": "vault_token", "address": self.vault.url,
                "timeouts": {"connect": 1, "request": 2}}
        spec.update(provider)
        return {"id": cred, "provider": spec}

    def lease_spec(self, cred="db", **provider):
        if "token_file" not in provider:
            token = self.vault.create_token(ttl=3600, token_id=f"hvs.{MARKER}-lease-{cred}")
            provider["token_file"] = self.token_file(token, f"{cred}.token")
        spec = {"type": "vault_lease", "address": self.vault.url,
                "path": "database/creds/readonly", "timeouts": {"connect": 1, "request": 2}}
        spec.update(provider)
        return {"id": cred, "provider": spec}

    def assert_no_secret_leaked(self):
        """Neither logs nor events nor errors show a token, a role or secret id, a lease id
        or a value that was read."""
        with self.lines.lock:
            text = "\n".join(self.lines.lines)
        with self.events_lock:
            text += json.dumps(self.events)
        self.assertNotIn(MARKER, text)
        with self.vault._lock:
            known = list(self.vault._tokens) + list(self.vault._leases)
        for secret in known + [v for v in self.seen_values if v]:
            self.assertNotIn(secret, text)

    def log_text(self):
        with self.lines.lock:
            return "\n".join(self.lines.lines)


class VaultToken(VaultTestCase):
    server_options = {"namespace": "team-a"}

    def test_a_token_is_renewed_by_its_increment_and_keeps_its_value(self):
        token = self.vault.create_token(ttl=2, explicit_max_ttl=120,
                                        token_id=f"hvs.{MARKER}-renewed")
        engine = self.engine(self.token_spec(token_file=self.token_file(token),
                                             namespace="team-a", increment="2s"))
        with engine:
            wait_for(lambda: len(self.of_type("refreshed")) >= 3, 8)
            self.assertEqual(self.read(engine, "vt"), token)
        self.assertGreaterEqual(len(self.of_type("refreshed")), 3)
        self.assertEqual(self.of_type("refresh_failed"), [])
        lookups = self.vault.requests("auth/token/lookup-self")
        renewals = self.vault.requests("auth/token/renew-self")
        self.assertEqual(len(lookups), 1)
        self.assertGreaterEqual(len(renewals), 2)
        for r in lookups + renewals:
            self.assertEqual(r.namespace, "team-a")
            self.assertTrue(r.vault_request)
            self.assertTrue(r.had_token)
            self.assertEqual(r.status, 200)
        self.assertEqual(self.vault.requests("auth/approle/login"), [])
        self.assertGreater(self.vault.token_ttl(token), 0)
        self.assert_no_secret_leaked()

    def test_at_its_max_ttl_a_token_is_replaced_by_an_approle_login(self):
        token = self.vault.create_token(ttl=2, explicit_max_ttl=3,
                                        token_id=f"hvs.{MARKER}-capped")
        engine = self.engine(self.token_spec(token_file=self.token_file(token),
                                             approle=self.approle(token_ttl=3),
                                             namespace="team-a", revoke_superseded_after=0.3))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            changed = wait_for(lambda: self.read(engine, "vt") != token, 8)
            self.assertTrue(changed)
            new = self.read(engine, "vt")
            self.assertTrue(new.startswith("hvs."))
            self.assertGreater(self.vault.token_ttl(new), 0)
            # The old token, replaced before it expired, is revoked after the grace.
            self.assertTrue(wait_for(lambda: self.vault.token_ttl(token) is None, 3))
        self.assertEqual(self.of_type("refresh_failed"), [])
        self.assertGreaterEqual(len(self.vault.requests("auth/approle/login")), 1)
        # Either a renewal for less than asked, or one for no time at all, said so.
        self.assertIn("max TTL", self.log_text())
        self.assert_no_secret_leaked()

    def test_a_refused_renewal_logs_in_at_once(self):
        token = self.vault.create_token(ttl=3, token_id=f"hvs.{MARKER}-refused")
        engine = self.engine(self.token_spec(token_file=self.token_file(token),
                                             approle=self.approle(), namespace="team-a"))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            self.vault.revoke_token(token)
            self.assertTrue(wait_for(lambda: self.read(engine, "vt") != token, 5))
        self.assertEqual(self.of_type("refresh_failed"), [])
        renewals = self.vault.requests("auth/token/renew-self")
        self.assertEqual(renewals[0].status, 403)
        self.assertIn("permission denied", self.log_text())
        self.assertIn("logging in with AppRole", self.log_text())
        self.assert_no_secret_leaked()

    def test_without_approle_a_refused_renewal_is_final(self):
        token = self.vault.create_token(ttl=2, token_id=f"hvs.{MARKER}-final")
        engine = self.engine(self.token_spec(token_file=self.token_file(token),
                                             namespace="team-a"))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            self.vault.revoke_token(token)
            self.assertTrue(wait_for(lambda: self.of_type("refresh_failed"), 4))
            time.sleep(0.5)
        failed = self.of_type("refresh_failed")
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["action"], "give_up")
        self.assertEqual(failed[0]["credential"], "vt")
        error = failed[0]["error"]
        self.assertIn(f"{self.vault.url}/v1/auth/token/renew-self", error)
        self.assertIn("HTTP 403: permission denied", error)
        self.assertIn("no approle", error)
        self.assertIn('credential "vt"', self.log_text())
        self.assert_no_secret_leaked()

    def test_an_expired_token_in_the_file_leads_to_a_login_or_gives_up(self):
        token = self.vault.create_token(ttl=1, token_id=f"hvs.{MARKER}-expired")
        self.vault.advance(5)
        engine = self.engine(
            self.token_spec("with", token_file=self.token_file(token),
                            approle=self.approle(), namespace="team-a"),
            self.token_spec("without", token_file=self.token_file(token), namespace="team-a"))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed", "with")
                                     and self.of_type("refresh_failed", "without"), 5))
            self.assertNotEqual(self.read(engine, "with"), token)
        failed = self.of_type("refresh_failed", "without")
        self.assertEqual(failed[0]["action"], "give_up")
        self.assertIn("lookup-self: HTTP 403: permission denied", failed[0]["error"])
        self.assert_no_secret_leaked()

    def test_revoke_on_remove_and_on_stop(self):
        first = self.vault.create_token(ttl=30, token_id=f"hvs.{MARKER}-removed")
        second = self.vault.create_token(ttl=30, token_id=f"hvs.{MARKER}-stopped")
        engine = self.engine(
            self.token_spec("a", token_file=self.token_file(first, "a"),
                            namespace="team-a", revoke_on_remove=True),
            self.token_spec("b", token_file=self.token_file(second, "b"),
                            namespace="team-a", revoke_on_remove=True))
        with engine:
            self.assertTrue(wait_for(lambda: len(self.of_type("refreshed")) >= 2, 3))
            engine.remove("a")
            self.assertTrue(wait_for(lambda: self.vault.token_ttl(first) is None, 3))
            self.assertGreater(self.vault.token_ttl(second), 0)
        # Closing the engine stops it, which revokes what remains.
        self.assertIsNone(self.vault.token_ttl(second))
        self.assertEqual(len(self.vault.requests("auth/token/revoke-self")), 2)
        self.assertIn("revoked the current token", self.log_text())
        self.assert_no_secret_leaked()


class VaultLease(VaultTestCase):
    def test_a_lease_is_renewed_and_its_value_kept(self):
        self.vault.add_database_role("readonly", default_ttl=3, max_ttl=120)
        engine = self.engine(self.lease_spec(increment=3))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            first = self.read(engine, "db")
            wait_for(lambda: len(self.vault.requests("sys/leases/renew")) >= 2, 6)
            self.assertEqual(self.read(engine, "db"), first)
        value = json.loads(first)
        self.assertEqual(sorted(value), ["password", "username"])
        self.assertEqual(len(self.vault.requests("database/creds/")), 1)
        renewals = self.vault.requests("sys/leases/renew")
        self.assertGreaterEqual(len(renewals), 2)
        self.assertTrue(all(r.status == 200 and r.vault_request for r in renewals))
        self.assertEqual(self.of_type("refresh_failed"), [])
        self.assert_no_secret_leaked()

    def test_a_lease_at_its_max_is_read_anew_and_the_old_one_revoked_after_grace(self):
        self.vault.add_database_role("readonly", default_ttl=2, max_ttl=3)
        engine = self.engine(self.lease_spec(revoke_superseded_after=0.5))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            first = self.read(engine, "db")
            self.assertTrue(wait_for(lambda: self.read(engine, "db") != first, 6))
            with self.vault._lock:
                leases = list(self.vault._leases)
            self.assertTrue(wait_for(lambda: len(self.vault.requests("sys/leases/revoke")), 3))
        reads = self.vault.requests("database/creds/")
        revokes = self.vault.requests("sys/leases/revoke")
        self.assertGreaterEqual(len(reads), 2)
        # Revoked no sooner than the grace period after the read that replaced it.
        self.assertGreaterEqual(revokes[0].time - reads[1].time, 0.45)
        self.assertIsNone(self.vault.lease_ttl(leases[0]))
        self.assertIsNotNone(self.vault.lease_ttl(leases[1]))
        self.assertEqual(self.of_type("refresh_failed"), [])
        self.assertIn("reached its max TTL", self.log_text())
        self.assert_no_secret_leaked()

    def test_an_expired_lease_is_read_anew(self):
        self.vault.add_database_role("readonly", default_ttl=3, max_ttl=120)
        engine = self.engine(self.lease_spec())
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            first = self.read(engine, "db")
            self.vault.advance(10)  # on the server, the lease ran out
            self.assertTrue(wait_for(lambda: self.read(engine, "db") != first, 5))
        self.assertEqual(self.vault.requests("sys/leases/renew")[0].status, 400)
        self.assertIn("lease expired", self.log_text())
        self.assertEqual(self.of_type("refresh_failed"), [])
        self.assert_no_secret_leaked()

    def test_revoke_on_remove(self):
        self.vault.add_database_role("readonly", default_ttl=30, max_ttl=120)
        engine = self.engine(self.lease_spec(revoke_on_remove=True))
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            with self.vault._lock:
                lease = list(self.vault._leases)[0]
            engine.remove("db")
            self.assertTrue(wait_for(lambda: self.vault.lease_ttl(lease) is None, 3))
        self.assertEqual(len(self.vault.requests("sys/leases/revoke")), 1)
        self.assert_no_secret_leaked()

    def test_a_lease_obtained_after_its_credential_was_removed_is_revoked(self):
        self.vault.add_database_role("readonly", default_ttl=30, max_ttl=120)
        self.vault.delay_next("database/creds", seconds=1)
        engine = self.engine(self.lease_spec(revoke_on_remove=True))
        with engine:
            self.assertTrue(wait_for(lambda: self.vault.requests("database/creds"), 3))
            engine.remove("db")  # while Vault is still making the lease
            with self.vault._lock:
                self.assertEqual(self.vault._leases, {})
            self.assertTrue(wait_for(lambda: self.vault.requests("sys/leases/revoke"), 4))
            self.assertTrue(wait_for(lambda: "revoked the never published lease"
                                     in self.log_text(), 3), self.log_text())
            with self.vault._lock:
                self.assertEqual(self.vault._leases, {})
        self.assertEqual(self.of_type("refreshed"), [])
        self.assertEqual(len(self.vault.requests("sys/leases/revoke")), 1)
        self.assert_no_secret_leaked()

    def test_stopping_revokes_leases_still_in_their_grace_period_without_waiting_it_out(self):
        self.vault.add_database_role("readonly", default_ttl=2, max_ttl=3)
        engine = self.engine(self.lease_spec(revoke_superseded_after=60))
        with engine:
            first = wait_for(lambda: self.of_type("refreshed") and self.read(engine, "db"), 3)
            self.assertTrue(wait_for(lambda: self.read(engine, "db") != first, 6))
            self.assertEqual(self.vault.requests("sys/leases/revoke"), [])
            started = time.monotonic()
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(len(self.vault.requests("sys/leases/revoke")), 1)
        self.assert_no_secret_leaked()

    def test_a_revocation_that_hangs_does_not_hold_the_stop_past_its_drain_timeout(self):
        self.vault.add_database_role("readonly", default_ttl=30, max_ttl=120)
        self.vault.delay_next("sys/leases/revoke", seconds=10)
        engine = self.engine(self.lease_spec(revoke_on_remove=True), drain=1)
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 3))
            started = time.monotonic()
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(len(self.vault.requests("sys/leases/revoke")), 1)
        self.assertIn("could not revoke the current lease", self.log_text())
        self.assert_no_secret_leaked()


class VaultFaults(VaultTestCase):
    def test_faults_are_retried_with_backoff_and_named(self):
        self.vault.add_database_role("readonly", default_ttl=30, max_ttl=120)
        creds = "database/creds/readonly"
        self.vault.fail_next(creds, status=503)
        self.vault.fail_next(creds, status=500)
        self.vault.fail_next(creds, status=429, retry_after=2)
        self.vault.delay_next(creds, seconds=2)
        self.vault.drop_next(creds)
        self.vault.truncate_next(creds)
        self.vault.malformed_next(creds)
        self.vault.oversized_next(creds, size=100_000)
        spec = self.lease_spec(timeouts={"connect": 1, "request": 0.5},
                               max_response_bytes=65536)
        engine = self.engine(spec)
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed"), 20))
        failed = self.of_type("refresh_failed")
        self.assertEqual(len(failed), 8, failed)
        errors = [e["error"] for e in failed]
        endpoint = f"{self.vault.url}/v1/{creds}"
        for e in failed:
            self.assertEqual(e["credential"], "db")
            self.assertEqual(e["action"], "retry")
            self.assertIn(endpoint, e["error"])
        self.assertIn("HTTP 503: Vault is sealed", errors[0])
        self.assertIn("HTTP 500: internal error", errors[1])
        self.assertIn("HTTP 429: rate limit quota exceeded", errors[2])
        self.assertIn("timed out", errors[3].lower().replace("timeout", "timed out"))
        self.assertTrue(any(w in errors[4].lower() for w in ("closed", "reset", "connection")),
                        errors[4])
        self.assertIn("body bytes", errors[5])
        self.assertIn("not valid JSON", errors[6])
        self.assertIn("65536", errors[7])
        # Retry-After: 2 is honoured; no request came sooner, and none came in a burst.
        times = [r.time for r in self.vault.requests(creds)]
        self.assertEqual(len(times), 9)
        self.assertGreaterEqual(times[3] - times[2], 1.9)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertTrue(all(g >= 0.15 for g in gaps), gaps)
        log = self.log_text()
        self.assertIn(f'credential "db": refresh failed (attempt 1): GET {endpoint}', log)
        self.assert_no_secret_leaked()

    def test_a_server_that_is_down_is_retried_and_named(self):
        self.vault.stop()
        spec = self.lease_spec()
        engine = self.engine(spec)
        with engine:
            self.assertTrue(wait_for(lambda: len(self.of_type("refresh_failed")) >= 2, 5))
        failed = self.of_type("refresh_failed")
        self.assertEqual(failed[0]["action"], "retry")
        self.assertIn(f"{self.vault.url}/v1/database/creds/readonly", failed[0]["error"])
        self.assertTrue(any(w in failed[0]["error"].lower() for w in ("refused", "connect")),
                        failed[0]["error"])
        self.assertEqual(self.of_type("refreshed"), [])
        self.assert_no_secret_leaked()

    def test_a_renewal_fault_keeps_the_token_and_retries(self):
        token = self.vault.create_token(ttl=3, token_id=f"hvs.{MARKER}-retried")
        self.vault.fail_next("auth/token/renew-self", status=503, count=2)
        engine = self.engine(self.token_spec(token_file=self.token_file(token)))
        with engine:
            self.assertTrue(wait_for(lambda: len(self.of_type("refreshed")) >= 2, 8))
            self.assertEqual(self.read(engine, "vt"), token)
        failed = self.of_type("refresh_failed")
        self.assertEqual(len(failed), 2, failed)
        self.assertTrue(all("renew-self: HTTP 503: Vault is sealed" in e["error"]
                            for e in failed))
        self.assertEqual(self.vault.requests("auth/approle/login"), [])
        self.assert_no_secret_leaked()


class VaultTls(VaultTestCase):
    def test_a_certificate_for_another_name_is_refused_and_the_right_one_accepted(self):
        certs = make_test_ca(self.tmp.name)
        wrong = self.make_server(certfile=certs.wrong_name_cert, keyfile=certs.wrong_name_key)
        right = self.make_server(certfile=certs.server_cert, keyfile=certs.server_key)
        for server, name in ((wrong, "wrong"), (right, "right")):
            server.add_database_role("readonly", default_ttl=30, max_ttl=120)
            token = server.create_token(ttl=3600, token_id=f"hvs.{MARKER}-{name}")
            self.vault = server
        specs = []
        for server, name in ((wrong, "wrong"), (right, "right")):
            token = f"hvs.{MARKER}-{name}"
            specs.append({"id": name, "provider": {
                "type": "vault_lease", "address": server.url, "path": "database/creds/readonly",
                "token_file": self.token_file(token, f"{name}.token"),
                "tls": {"ca_file": certs.ca_cert}, "timeouts": {"connect": 1, "request": 2}}})
        engine = self.engine(*specs)
        with engine:
            self.assertTrue(wait_for(lambda: self.of_type("refreshed", "right")
                                     and self.of_type("refresh_failed", "wrong"), 5))
        failed = self.of_type("refresh_failed", "wrong")[0]
        self.assertIn(f"{wrong.url}/v1/database/creds/readonly", failed["error"])
        self.assertIn("certificate", failed["error"].lower())
        self.assertEqual(self.of_type("refreshed", "wrong"), [])
        self.assertEqual(wrong.requests(), [])  # nothing was sent to it
        self.assert_no_secret_leaked()


if __name__ == "__main__":
    unittest.main()
