"""keyturn's Vault KV version 2 store, through the Python binding and libkeyturn, against
the Vault API test server (tests/support/vault_server.py) on 127.0.0.1.

A Python hook issues the values; the store keeps them in `secret/data/<path>` with
check-and-set. Every value and the Vault token are recognisable (SECRETKV..., and the
token itself); no event, log line or error message seen during a test may hold one.
"""

import json
import logging
import os
import secrets
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "bindings", "python"), os.path.join(REPO, "tests", "support")]

import keyturn  # noqa: E402
from test_helpers import wait_for, write_private  # noqa: E402
from vault_server import VaultServer  # noqa: E402

MARK = "SECRETKV"
TIMEOUT = 10.0


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))


class VaultKvStore(unittest.TestCase):
    def setUp(self):
        self.vault = VaultServer().start()
        self.addCleanup(self.vault.stop)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        # A token that reaches the KV mount only, as an application's would.
        self.token = self.vault.create_token(ttl=3600, paths=["secret/"])
        self.token_file = os.path.join(self.tmp.name, "vault-token")
        write_private(self.token_file, self.token)
        self.where = f"vault kv {self.vault.url}/secret/app/db"
        self.seen = []  # every event and log line, as text
        self.log = Recorder()
        logging.getLogger("keyturn").addHandler(self.log)
        self.addCleanup(logging.getLogger("keyturn").removeHandler, self.log)
        self.issued = []
        self.lock = threading.Lock()
        self.engines = []

    def tearDown(self):
        for engine in self.engines:
            engine.close()
        texts = self.seen + [text for _, text in self.log.records]
        for text in texts:
            self.assertNotIn(MARK, text)
            self.assertNotIn(self.token, text)

    # -- building blocks ----------------------------------------------------------------

    def spec(self, lifetime):
        self.lifetime = lifetime
        return {"id": "db", "provider": {"type": "hook", "name": "issuer"},
                "store": {"type": "vault_kv", "address": self.vault.url, "path": "app/db",
                          "token_file": self.token_file, "timeouts": {"request": "3s"}},
                "policy": {"jitter": 0, "backoff": {"initial": 0.2, "max": 0.5, "jitter": 0}}}

    def engine(self, lifetime=60):
        engine = keyturn.Engine()
        self.engines.append(engine)
        engine.set_log_level(logging.DEBUG)
        events = engine.events()
        engine.subscribe(lambda e: self.seen.append(json.dumps(e.data)))

        @engine.hook("issuer")
        def issue(request):
            value = f"{MARK}-value-{secrets.token_hex(6)}"
            with self.lock:
                self.issued.append(value)
            return {"value": value, "refresh": f"{MARK}-refresh-{secrets.token_hex(6)}",
                    "expires_in": self.lifetime}

        engine.add(self.spec(lifetime))
        return engine, events

    def vault_call(self, method, path, body=None):
        """A request to the server as another Vault client would make it (root token)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.vault.url}/v1/{path}", data=data,
                                         method=method,
                                         headers={"X-Vault-Token": self.vault.root_token})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def kv_data(self):
        status, body = self.vault_call("GET", "secret/data/app/db")
        self.assertEqual(status, 200, body)
        return body["data"]["data"], body["data"]["metadata"]["version"]

    def kv_current_version(self):
        status, body = self.vault_call("GET", "secret/metadata/app/db")
        self.assertEqual(status, 200, body)
        return body["data"]["current_version"], body["data"]["versions"]

    @staticmethod
    def refreshed(events):
        return events.wait_for(lambda e: e.type == "refreshed", TIMEOUT)

    def failed_persist(self, events):
        event = self.refreshed(events)
        self.assertFalse(event.get("persisted"), event.data)
        self.assertTrue(event.get("error", "").startswith(self.where + ": not written: "),
                        event.data)
        return event.get("error")

    # -- tests --------------------------------------------------------------------------

    def test_a_refreshed_value_is_stored_and_a_new_engine_loads_it_without_refreshing(self):
        engine, events = self.engine()
        engine.start()
        event = self.refreshed(events)
        self.assertTrue(event.get("persisted"), event.data)
        value = engine.read_text("db")
        self.assertEqual(engine.status("db")["store"], self.where)
        by_keyturn = self.vault.requests("secret/data/app/db")  # before this test's own

        data, version = self.kv_data()
        self.vault.clear_requests()
        self.assertEqual(version, 1)
        self.assertEqual(data["format"], "keyturn-snapshot-1")
        self.assertEqual(data["value"], value)
        self.assertTrue(data["refresh"].startswith(MARK + "-refresh-"))
        engine.close()

        calls = len(self.issued)
        second, _ = self.engine()
        # Loaded at add, before the engine starts: the stored value is readable at once.
        self.assertEqual(second.read_text("db"), value)
        second.start()
        time.sleep(1.0)
        self.assertEqual(len(self.issued), calls, "a stored, valid value was refreshed")
        self.assertEqual(second.read_text("db"), value)
        by_keyturn += self.vault.requests("secret/data/app/db")
        self.assertEqual(self.kv_current_version()[0], 1)

        # Every request of the store carried the token and Vault's request marker.
        self.assertEqual([r.method for r in by_keyturn], ["GET", "POST", "GET"])
        for record in by_keyturn:
            self.assertTrue(record.had_token and record.vault_request, record)

    def test_each_refresh_writes_a_new_version_with_check_and_set(self):
        engine, events = self.engine(lifetime=1.2)
        engine.start()
        for _ in range(3):
            self.assertTrue(self.refreshed(events).get("persisted"))
        current, versions = self.kv_current_version()
        self.assertGreaterEqual(current, 3)
        self.assertTrue({"1", "2", "3"} <= set(versions), versions)
        data, version = self.kv_data()
        self.assertEqual(version, current)
        self.assertIn(data["value"], self.issued)
        writes = [r for r in self.vault.requests("secret/data/app/db") if r.method != "GET"]
        self.assertEqual({r.status for r in writes}, {200})

    def test_a_concurrent_writer_wins_and_is_never_overwritten(self):
        engine, events = self.engine(lifetime=1.2)
        engine.start()
        self.assertTrue(self.refreshed(events).get("persisted"))
        # Another client writes the secret behind keyturn's back.
        status, body = self.vault_call("POST", "secret/data/app/db",
                                       {"data": {"owner": "another writer"}})
        self.assertEqual(status, 200, body)
        theirs = body["data"]["version"]

        error = self.failed_persist(events)
        self.assertIn("another writer changed the secret after version", error)
        self.assertIn("check-and-set parameter did not match the current version", error)
        # The next refresh is refused too: nothing retries by overwriting.
        self.failed_persist(events)
        self.assertEqual(self.kv_data(), ({"owner": "another writer"}, theirs))
        self.assertEqual(self.kv_current_version()[0], theirs)
        logged = [text for level, text in self.log.records
                  if level >= logging.ERROR and self.where in text and "another writer" in text]
        self.assertTrue(logged, self.log.records)
        # The value was still published in memory for readers.
        self.assertIn(engine.read_text("db"), self.issued)

    def test_vault_unavailable_at_persist_is_a_clear_failure(self):
        engine, events = self.engine()  # loads: nothing stored yet
        self.vault.fail_next("secret/data/", status=503)
        engine.start()
        error = self.failed_persist(events)
        self.assertIn("HTTP 503", error)
        self.assertIn("Vault is sealed", error)

    def test_permission_denied_at_persist_is_a_clear_failure(self):
        engine, events = self.engine()
        self.vault.revoke_token(self.token)
        engine.start()
        error = self.failed_persist(events)
        self.assertIn("HTTP 403", error)
        self.assertIn("permission denied", error)
        self.assertEqual(self.vault_call("GET", "secret/data/app/db")[0], 404)

    def test_a_server_that_is_gone_fails_the_persist_promptly(self):
        engine, events = self.engine()
        self.vault.stop()
        started = time.monotonic()
        engine.start()
        error = self.failed_persist(events)
        self.assertLess(time.monotonic() - started, 6.0)
        self.assertIn(f"POST {self.vault.url}/v1/secret/data/app/db", error)

    def test_a_bad_token_at_add_names_the_store(self):
        write_private(self.token_file, "not-a-token")
        with self.assertRaises(keyturn.KeyturnError) as caught:
            self.engine()
        message = caught.exception.message
        self.assertIn('credential "db"', message)
        self.assertIn(self.where + ": cannot read", message)
        self.assertIn("permission denied", message)
        self.seen.append(message)

    def test_a_token_file_readable_by_others_is_refused(self):
        os.chmod(self.token_file, 0o644)
        with self.assertRaises(keyturn.KeyturnError) as caught:
            self.engine()
        self.assertIn("mode must be 0600", caught.exception.message)
        self.seen.append(caught.exception.message)

    def seeded_engine(self, seed, store=None):
        """An engine with credential "cache" seeded from Vault KV; its hook records the
        requests it gets and answers with a new token."""
        engine = keyturn.Engine()
        self.engines.append(engine)
        engine.set_log_level(logging.DEBUG)
        engine.subscribe(lambda e: self.seen.append(json.dumps(e.data)))
        self.requests = []

        @engine.hook("console")
        def refresh(request):
            with self.lock:
                self.requests.append(request)
            return {"value": f"{MARK}-renewed-{secrets.token_hex(6)}",
                    "refresh": f"{MARK}-next-{secrets.token_hex(6)}", "expires_in": 60}

        spec = {"id": "cache", "provider": {"type": "hook", "name": "console"},
                "seed": seed, "policy": {"jitter": 0}}
        if store is not None:
            spec["store"] = store
        return engine, spec

    def kv_seed(self, path="consoles/cache"):
        return {"address": self.vault.url, "path": path, "token_file": self.token_file}

    def test_a_token_document_in_kv_seeds_the_credential(self):
        # As a token console hands it out, written with `vault kv put` (strings).
        auth, refresh = f"{MARK}-auth-{secrets.token_hex(6)}", f"{MARK}-rt-{secrets.token_hex(6)}"
        self.vault.put_secret("consoles/cache", {"authToken": auth, "refreshToken": refresh,
                                                 "validUntil": str(int(time.time()) + 3600)})
        engine, spec = self.seeded_engine({"vault_kv": self.kv_seed(),
                                           "format": "token_document"})
        engine.add(spec)
        engine.start()
        self.assertEqual(engine.read_text("cache"), auth)  # no refresh was needed
        self.assertEqual(self.requests, [])
        engine.refresh("cache")
        self.assertTrue(wait_for(lambda: self.requests, TIMEOUT))
        self.assertEqual(self.requests[0].refresh, refresh)
        self.assertEqual(self.requests[0].value, auth)

    def test_a_refresh_token_field_in_kv_seeds_the_first_refresh(self):
        refresh = f"{MARK}-rt-{secrets.token_hex(6)}"
        self.vault.put_secret("consoles/cache", {"token": refresh, "note": "for the cache"})
        engine, spec = self.seeded_engine({"vault_kv": self.kv_seed(), "field": "token"})
        engine.add(spec)
        engine.start()
        self.assertTrue(wait_for(lambda: self.requests, TIMEOUT))
        self.assertEqual(self.requests[0].refresh, refresh)
        self.assertEqual(self.requests[0].reason, "initial")

    def test_a_stored_value_wins_over_the_kv_seed(self):
        store = {"type": "file", "path": os.path.join(self.tmp.name, "cache.json")}
        self.vault.put_secret("consoles/cache", {"refresh_token": f"{MARK}-first"})
        engine, spec = self.seeded_engine({"vault_kv": self.kv_seed()}, store)
        events = engine.events()
        engine.add(spec)
        engine.start()
        self.assertTrue(self.refreshed(events))
        stored = engine.read_text("cache")
        engine.close()
        reads = len(self.vault.requests("secret/data/consoles/cache"))
        again, spec = self.seeded_engine({"vault_kv": self.kv_seed()}, store)
        again.add(spec)
        self.assertEqual(again.read_text("cache"), stored)
        self.assertEqual(len(self.vault.requests("secret/data/consoles/cache")), reads)

    def test_kv_seed_mistakes_name_the_secret_and_the_field(self):
        where = f"the seed vault kv {self.vault.url}/secret/consoles/cache"
        cases = [
            ({"vault_kv": self.kv_seed()}, None, f'"cache": {where} holds nothing'),
            ({"vault_kv": self.kv_seed()}, {"token": f"{MARK}-x"},
             f'{where}: the secret has no field "refresh_token"'),
            ({"vault_kv": self.kv_seed(), "field": "token"}, {"token": ""},
             f'{where}: field "token": expected a non-empty string'),
            ({"vault_kv": self.kv_seed(), "format": "token_document"},
             {"authToken": f"{MARK}-a", "validUntil": "soon"},
             f"{where}: token document: validUntil: expected unix seconds"),
        ]
        for seed, data, expected in cases:
            with self.subTest(expected=expected):
                if data is not None:
                    self.vault.put_secret("consoles/cache", data)
                engine, spec = self.seeded_engine(seed)
                with self.assertRaises(keyturn.KeyturnError) as caught:
                    engine.add(spec)
                self.assertIn(expected, str(caught.exception))
                self.seen.append(str(caught.exception))
        # A token that cannot read the secret.
        write_private(self.token_file, self.vault.create_token(ttl=3600, paths=["other/"]))
        engine, spec = self.seeded_engine({"vault_kv": self.kv_seed()})
        with self.assertRaises(keyturn.KeyturnError) as caught:
            engine.add(spec)
        self.assertIn(f"{where}: cannot read: ", str(caught.exception))
        self.assertIn("permission denied", str(caught.exception))
        self.seen.append(str(caught.exception))


class VaultKvSecretStore(unittest.TestCase):
    """A rotating secret's versions and journal kept in KV."""

    def setUp(self):
        self.vault = VaultServer().start()
        self.addCleanup(self.vault.stop)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.token_file = os.path.join(self.tmp.name, "vault-token")
        write_private(self.token_file, self.vault.create_token(ttl=3600, paths=["secret/"]))
        self.seen = []

    def engine(self):
        engine = keyturn.Engine()
        self.addCleanup(engine.close)
        engine.subscribe(lambda e: self.seen.append(json.dumps(e.data)))
        engine.rotation_steps(
            "steps", create=lambda r: f"{MARK}-pw-{secrets.token_hex(6)}",
            set=lambda r: None, test=lambda r: None, finish=lambda r: None)
        engine.add_secret({"id": "db-app", "hook": {"type": "hook", "name": "steps"},
                           "store": {"type": "vault_kv", "address": self.vault.url,
                                     "path": "keyturn/db-app", "token_file": self.token_file}})
        return engine

    def test_a_rotation_is_journaled_in_kv_and_loaded_by_a_new_engine(self):
        engine = self.engine()
        events = engine.events()
        engine.start()  # no value at all: it rotates at once
        events.wait_for(lambda e: e.type == "rotated", TIMEOUT)
        value = engine.read_secret("db-app")
        self.assertTrue(value.startswith(MARK.encode()))
        engine.close()

        status, body = urllib_get(self.vault, "secret/metadata/keyturn/db-app")
        self.assertEqual(status, 200)
        # Journal writes: started, created, set, tested, finished, at least.
        self.assertGreaterEqual(body["data"]["current_version"], 5)

        second = self.engine()
        self.assertEqual(second.read_secret("db-app"), value)
        for text in self.seen:
            self.assertNotIn(MARK, text)


def urllib_get(vault, path):
    request = urllib.request.Request(f"{vault.url}/v1/{path}",
                                     headers={"X-Vault-Token": vault.root_token})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status, json.loads(answer.read())


if __name__ == "__main__":
    unittest.main()
