"""Checks that vault_server.VaultServer answers as Vault's HTTP API does.

Run from tests/support: python3 -m unittest -v vault_server_check
"""

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from test_certs import make_test_ca
from vault_server import VaultServer, capped_warning, go_duration, parse_duration

TIMEOUT = 10  # seconds any single request may take


def call(server, method, path, body=None, token=None, headers=None, timeout=TIMEOUT):
    """One request; returns (status, headers, parsed JSON or None)."""
    host, port = server.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        all_headers = dict(headers or {})
        if token:
            all_headers["X-Vault-Token"] = token
        data = None if body is None else json.dumps(body)
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, response, json.loads(raw) if raw else None
    finally:
        conn.close()


class VaultCase(unittest.TestCase):
    def setUp(self):
        self.vault = VaultServer().start()
        self.addCleanup(self.vault.stop)
        self.root = self.vault.root_token

    def call(self, method, path, body=None, token=None, **kwargs):
        return call(self.vault, method, path, body, token, **kwargs)


class Helpers(unittest.TestCase):
    def test_durations_parse_as_vault_accepts_them(self):
        self.assertEqual(parse_duration(3600), 3600)
        self.assertEqual(parse_duration("3600"), 3600)
        self.assertEqual(parse_duration("1h"), 3600)
        self.assertEqual(parse_duration("1h30m15s"), 5415)

    def test_durations_print_as_go_prints_them(self):
        self.assertEqual(go_duration(3600), "1h0m0s")
        self.assertEqual(go_duration(125), "2m5s")
        self.assertEqual(go_duration(30), "30s")
        self.assertEqual(go_duration(0), "0s")


class TokenAuth(VaultCase):
    def test_lookup_self_reports_remaining_ttl_and_expiry(self):
        token = self.vault.create_token(ttl=600, explicit_max_ttl=1200)
        status, _, body = self.call("GET", "/v1/auth/token/lookup-self", token=token)
        self.assertEqual(status, 200)
        data = body["data"]
        self.assertEqual(data["id"], token)
        self.assertIn(data["ttl"], (599, 600))
        self.assertEqual(data["creation_ttl"], 600)
        self.assertEqual(data["explicit_max_ttl"], 1200)
        self.assertTrue(data["renewable"])
        self.assertTrue(data["expire_time"].endswith("Z"))
        self.assertTrue(data["accessor"])
        self.assertEqual(data["type"], "service")

    def test_root_token_never_expires_and_cannot_be_renewed(self):
        _, _, body = self.call("GET", "/v1/auth/token/lookup-self", token=self.root)
        self.assertEqual(body["data"]["ttl"], 0)
        self.assertIsNone(body["data"]["expire_time"])
        self.assertEqual(body["data"]["policies"], ["root"])
        status, _, body = self.call("POST", "/v1/auth/token/renew-self", {}, token=self.root)
        self.assertEqual(status, 400)
        self.assertEqual(body["errors"], ["lease not found or lease is not renewable"])

    def test_renew_self_grants_the_increment_as_string_or_seconds(self):
        token = self.vault.create_token(ttl=60)
        for increment in ("1h", 3600):
            status, _, body = self.call("POST", "/v1/auth/token/renew-self",
                                        {"increment": increment}, token=token)
            self.assertEqual(status, 200)
            self.assertEqual(body["auth"]["client_token"], token)
            self.assertEqual(body["auth"]["lease_duration"], 3600)
            self.assertTrue(body["auth"]["renewable"])
            self.assertIsNone(body["warnings"])

    def test_renew_self_caps_at_explicit_max_ttl_with_vaults_warning(self):
        token = self.vault.create_token(ttl=150, explicit_max_ttl=300)
        self.vault.advance(100)
        status, _, body = self.call("POST", "/v1/auth/token/renew-self",
                                    {"increment": "1h"}, token=token)
        self.assertEqual(status, 200)
        granted = body["auth"]["lease_duration"]
        self.assertIn(granted, (199, 200, 201))
        self.assertEqual(body["warnings"], [capped_warning(3600, granted)])
        self.assertEqual(
            body["warnings"][0],
            f'TTL of "1h0m0s" exceeded the effective max_ttl of "{go_duration(granted)}"; '
            "TTL value is capped accordingly")

    def test_renew_self_caps_at_the_system_max_ttl(self):
        vault = VaultServer(max_lease_ttl=1000).start()
        self.addCleanup(vault.stop)
        token = vault.create_token(ttl=60)
        _, _, body = call(vault, "POST", "/v1/auth/token/renew-self", {"increment": 5000},
                          token=token)
        self.assertIn(body["auth"]["lease_duration"], (999, 1000))
        self.assertEqual(len(body["warnings"]), 1)

    def test_non_renewable_token_is_refused_with_400(self):
        token = self.vault.create_token(ttl=60, renewable=False)
        status, _, body = self.call("POST", "/v1/auth/token/renew-self", {}, token=token)
        self.assertEqual(status, 400)
        self.assertEqual(body["errors"], ["lease is not renewable"])

    def test_expired_token_is_permission_denied(self):
        token = self.vault.create_token(ttl=30)
        self.vault.advance(31)
        status, _, body = self.call("GET", "/v1/auth/token/lookup-self", token=token)
        self.assertEqual((status, body), (403, {"errors": ["permission denied"]}))
        self.assertIsNone(self.vault.token_ttl(token))

    def test_unknown_or_missing_token_is_permission_denied(self):
        for token in ("hvs.not-a-token", None):
            status, _, body = self.call("GET", "/v1/auth/token/lookup-self", token=token)
            self.assertEqual((status, body), (403, {"errors": ["permission denied"]}))

    def test_bearer_authorization_is_accepted_like_x_vault_token(self):
        token = self.vault.create_token()
        status, _, _ = self.call("GET", "/v1/auth/token/lookup-self",
                                 headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(status, 200)

    def test_revoke_self_ends_the_token_and_its_children(self):
        parent = self.vault.create_token()
        child = self.vault.create_token(parent=parent)
        status, _, body = self.call("POST", "/v1/auth/token/revoke-self", token=parent)
        self.assertEqual((status, body), (204, None))
        for token in (parent, child):
            status, _, _ = self.call("GET", "/v1/auth/token/lookup-self", token=token)
            self.assertEqual(status, 403)

    def test_create_makes_a_token_with_the_asked_ttl(self):
        status, _, body = self.call("POST", "/v1/auth/token/create",
                                    {"ttl": "10m", "explicit_max_ttl": "1h",
                                     "policies": ["app"]}, token=self.root)
        self.assertEqual(status, 200)
        auth = body["auth"]
        self.assertEqual(auth["lease_duration"], 600)
        self.assertEqual(auth["policies"], ["app"])
        self.assertFalse(auth["orphan"])
        _, _, body = self.call("GET", "/v1/auth/token/lookup-self",
                               token=auth["client_token"])
        self.assertEqual(body["data"]["explicit_max_ttl"], 3600)


class AppRole(VaultCase):
    def test_login_returns_a_token_with_the_roles_ttl(self):
        role_id, secret_id = self.vault.add_approle("app", token_ttl=120, token_max_ttl=600)
        status, _, body = self.call("POST", "/v1/auth/approle/login",
                                    {"role_id": role_id, "secret_id": secret_id})
        self.assertEqual(status, 200)
        auth = body["auth"]
        self.assertEqual(auth["lease_duration"], 120)
        self.assertTrue(auth["renewable"])
        self.assertEqual(auth["metadata"], {"role_name": "app"})
        self.assertIn(self.vault.token_ttl(auth["client_token"]), (119, 120))

    def test_login_token_renewal_is_capped_at_token_max_ttl(self):
        role_id, secret_id = self.vault.add_approle("app", token_ttl=120, token_max_ttl=600)
        _, _, body = self.call("POST", "/v1/auth/approle/login",
                               {"role_id": role_id, "secret_id": secret_id})
        token = body["auth"]["client_token"]
        _, _, body = self.call("POST", "/v1/auth/token/renew-self", {}, token=token)
        self.assertEqual(body["auth"]["lease_duration"], 120)  # token_ttl when not told
        _, _, body = self.call("POST", "/v1/auth/token/renew-self", {"increment": 3600},
                               token=token)
        self.assertIn(body["auth"]["lease_duration"], (599, 600))
        self.assertIn("TTL value is capped accordingly", body["warnings"][0])

    def test_wrong_ids_are_refused_with_vaults_message(self):
        role_id, secret_id = self.vault.add_approle("app")
        for ids in ({"role_id": role_id, "secret_id": "wrong"},
                    {"role_id": "wrong", "secret_id": secret_id}):
            status, _, body = self.call("POST", "/v1/auth/approle/login", ids)
            self.assertEqual((status, body), (400, {"errors": ["invalid role or secret ID"]}))
        status, _, body = self.call("POST", "/v1/auth/approle/login", {"secret_id": secret_id})
        self.assertEqual((status, body["errors"]), (400, ["missing role_id"]))


class Leases(VaultCase):
    def setUp(self):
        super().setUp()
        self.vault.add_database_role("app", default_ttl=60, max_ttl=300)
        self.token = self.vault.create_token(paths=["database/", "sys/leases/"])

    def creds(self, token=None):
        status, _, body = self.call("GET", "/v1/database/creds/app", token=token or self.token)
        self.assertEqual(status, 200)
        return body

    def renew(self, lease_id, increment):
        return self.call("PUT", "/v1/sys/leases/renew",
                         {"lease_id": lease_id, "increment": increment}, token=self.token)

    def test_creds_are_fresh_random_values_with_a_lease(self):
        first, second = self.creds(), self.creds()
        self.assertTrue(first["lease_id"].startswith("database/creds/app/"))
        self.assertEqual(first["lease_duration"], 60)
        self.assertTrue(first["renewable"])
        self.assertNotEqual(first["data"]["username"], second["data"]["username"])
        self.assertNotEqual(first["data"]["password"], second["data"]["password"])
        self.assertNotEqual(first["lease_id"], second["lease_id"])

    def test_unknown_role_is_400(self):
        status, _, body = self.call("GET", "/v1/database/creds/nope", token=self.root)
        self.assertEqual((status, body["errors"]), (400, ["unknown role: nope"]))

    def test_renew_grants_the_increment(self):
        lease = self.creds()["lease_id"]
        status, _, body = self.renew(lease, 120)
        self.assertEqual(status, 200)
        self.assertEqual((body["lease_id"], body["lease_duration"]), (lease, 120))
        self.assertTrue(body["renewable"])
        self.assertIsNone(body["warnings"])

    def test_renew_is_capped_at_the_max_ttl_with_a_warning(self):
        lease = self.creds()["lease_id"]
        self.vault.advance(50)
        status, _, body = self.renew(lease, "1h")
        self.assertEqual(status, 200)
        self.assertIn(body["lease_duration"], (249, 250, 251))
        self.assertEqual(body["warnings"], [capped_warning(3600, body["lease_duration"])])

    def test_renewing_an_expired_lease_is_400_lease_expired(self):
        lease = self.creds()["lease_id"]
        self.vault.advance(61)
        status, _, body = self.renew(lease, 60)
        self.assertEqual((status, body["errors"]), (400, ["lease expired"]))

    def test_renewing_an_unknown_lease_is_400(self):
        status, _, body = self.renew("database/creds/app/nope", 60)
        self.assertEqual((status, body["errors"]),
                         (400, ["lease not found or lease is not renewable"]))

    def test_lookup_reports_the_lease(self):
        lease = self.creds()["lease_id"]
        status, _, body = self.call("PUT", "/v1/sys/leases/lookup", {"lease_id": lease},
                                    token=self.token)
        self.assertEqual(status, 200)
        self.assertEqual(body["data"]["id"], lease)
        self.assertIn(body["data"]["ttl"], (59, 60))
        self.assertIsNone(body["data"]["last_renewal_time"])
        status, _, body = self.call("PUT", "/v1/sys/leases/lookup", {"lease_id": "x"},
                                    token=self.token)
        self.assertEqual((status, body["errors"]), (400, ["invalid lease"]))

    def test_revoke_ends_the_lease(self):
        lease = self.creds()["lease_id"]
        status, _, body = self.call("PUT", "/v1/sys/leases/revoke", {"lease_id": lease},
                                    token=self.token)
        self.assertEqual((status, body), (204, None))
        self.assertIsNone(self.vault.lease_ttl(lease))
        self.assertEqual(self.renew(lease, 60)[0], 400)

    def test_revoking_the_owner_token_ends_its_leases(self):
        lease = self.creds()["lease_id"]
        self.vault.revoke_token(self.token)
        self.assertIsNone(self.vault.lease_ttl(lease))


class KvVersion2(VaultCase):
    def write(self, path, data, cas=None):
        body = {"data": data}
        if cas is not None:
            body["options"] = {"cas": cas}
        return self.call("POST", f"/v1/secret/data/{path}", body, token=self.root)

    def read(self, path, query=""):
        return self.call("GET", f"/v1/secret/data/{path}{query}", token=self.root)

    def test_write_then_read_latest_and_older_versions(self):
        status, _, body = self.write("app/db", {"password": "one"})
        self.assertEqual((status, body["data"]["version"]), (200, 1))
        self.assertEqual(body["data"]["deletion_time"], "")
        self.write("app/db", {"password": "two"})
        _, _, body = self.read("app/db")
        self.assertEqual(body["data"]["data"], {"password": "two"})
        self.assertEqual(body["data"]["metadata"]["version"], 2)
        self.assertFalse(body["data"]["metadata"]["destroyed"])
        _, _, body = self.read("app/db", "?version=1")
        self.assertEqual(body["data"]["data"], {"password": "one"})

    def test_missing_secret_is_404_with_empty_errors(self):
        status, _, body = self.read("nothing")
        self.assertEqual((status, body), (404, {"errors": []}))

    def test_cas_mismatch_is_400_with_vaults_message(self):
        self.write("app/db", {"v": 1})
        status, _, body = self.write("app/db", {"v": 2}, cas=0)
        self.assertEqual((status, body["errors"]),
                         (400, ["check-and-set parameter did not match the current version"]))
        self.assertEqual(self.write("app/db", {"v": 2}, cas=1)[0], 200)
        self.assertEqual(self.write("app/db", {"v": 3}, cas=1)[0], 400)

    def test_cas_zero_writes_only_when_absent(self):
        self.assertEqual(self.write("new", {"v": 1}, cas=0)[0], 200)
        self.assertEqual(self.write("new", {"v": 1}, cas=0)[0], 400)

    def test_metadata_lists_versions(self):
        self.write("app/db", {"v": 1})
        self.write("app/db", {"v": 2})
        status, _, body = self.call("GET", "/v1/secret/metadata/app/db", token=self.root)
        self.assertEqual(status, 200)
        data = body["data"]
        self.assertEqual(data["current_version"], 2)
        self.assertEqual(sorted(data["versions"]), ["1", "2"])
        self.assertFalse(data["cas_required"])
        status, _, body = self.call("LIST", "/v1/secret/metadata/app", token=self.root)
        self.assertEqual((status, body["data"]["keys"]), (200, ["db"]))

    def test_cas_required_metadata_demands_cas(self):
        self.call("POST", "/v1/secret/metadata/locked", {"cas_required": True},
                  token=self.root)
        status, _, body = self.write("locked", {"v": 1})
        self.assertEqual((status, body["errors"]),
                         (400, ["check-and-set parameter required for this call"]))
        self.assertEqual(self.write("locked", {"v": 1}, cas=0)[0], 200)

    def test_deleted_version_reads_as_404_with_its_metadata(self):
        self.write("app/db", {"v": 1})
        status, _, _ = self.call("DELETE", "/v1/secret/data/app/db", token=self.root)
        self.assertEqual(status, 204)
        status, _, body = self.read("app/db")
        self.assertEqual(status, 404)
        self.assertIsNone(body["data"]["data"])
        self.assertNotEqual(body["data"]["metadata"]["deletion_time"], "")
        self.call("POST", "/v1/secret/undelete/app/db", {"versions": [1]}, token=self.root)
        self.assertEqual(self.read("app/db")[0], 200)
        self.call("PUT", "/v1/secret/destroy/app/db", {"versions": [1]}, token=self.root)
        status, _, body = self.read("app/db")
        self.assertEqual(status, 404)
        self.assertTrue(body["data"]["metadata"]["destroyed"])

    def test_deleting_metadata_removes_every_version(self):
        self.write("app/db", {"v": 1})
        status, _, _ = self.call("DELETE", "/v1/secret/metadata/app/db", token=self.root)
        self.assertEqual(status, 204)
        self.assertEqual(self.read("app/db")[0], 404)

    def test_only_ten_versions_are_kept(self):
        for i in range(12):
            self.write("many", {"v": i})
        _, _, body = self.call("GET", "/v1/secret/metadata/many", token=self.root)
        self.assertEqual(body["data"]["oldest_version"], 3)
        self.assertEqual(len(body["data"]["versions"]), 10)


class PermissionsAndHeaders(VaultCase):
    def test_a_token_reaches_only_its_paths_and_the_default_policy(self):
        token = self.vault.create_token(paths=["secret/data/app/"])
        self.vault.put_secret("app/db", {"v": 1})
        self.vault.put_secret("other", {"v": 1})
        self.assertEqual(self.call("GET", "/v1/secret/data/app/db", token=token)[0], 200)
        status, _, body = self.call("GET", "/v1/secret/data/other", token=token)
        self.assertEqual((status, body), (403, {"errors": ["permission denied"]}))
        self.assertEqual(self.call("GET", "/v1/auth/token/lookup-self", token=token)[0], 200)

    def test_namespace_and_request_headers_are_recorded_but_no_token(self):
        token = self.vault.create_token()
        self.call("GET", "/v1/auth/token/lookup-self", token=token,
                  headers={"X-Vault-Namespace": "team-a", "X-Vault-Request": "true"})
        self.call("GET", "/v1/sys/health")
        first, second = self.vault.requests()
        self.assertEqual((first.method, first.path), ("GET", "/v1/auth/token/lookup-self"))
        self.assertEqual(first.namespace, "team-a")
        self.assertTrue(first.vault_request)
        self.assertTrue(first.had_token)
        self.assertEqual(first.status, 200)
        self.assertIsNone(second.namespace)
        self.assertFalse(second.vault_request)
        self.assertNotIn(token, repr(self.vault.requests()))
        self.assertEqual(len(self.vault.requests("auth/token/")), 1)

    def test_a_namespaced_server_refuses_requests_outside_its_namespace(self):
        vault = VaultServer(namespace="team-a").start()
        self.addCleanup(vault.stop)
        token = vault.create_token()
        status, _, _ = call(vault, "GET", "/v1/auth/token/lookup-self", token=token)
        self.assertEqual(status, 403)
        status, _, _ = call(vault, "GET", "/v1/auth/token/lookup-self", token=token,
                            headers={"X-Vault-Namespace": "team-a/"})
        self.assertEqual(status, 200)

    def test_unknown_path_is_404_for_root_and_403_for_others(self):
        self.assertEqual(self.call("GET", "/v1/nowhere", token=self.root)[0], 404)
        token = self.vault.create_token(paths=["secret/"])
        self.assertEqual(self.call("GET", "/v1/nowhere", token=token)[0], 403)

    def test_health_needs_no_token(self):
        status, _, body = self.call("GET", "/v1/sys/health")
        self.assertEqual(status, 200)
        self.assertFalse(body["sealed"])


class Faults(VaultCase):
    PATH = "/v1/auth/token/lookup-self"

    def lookup(self, timeout=TIMEOUT):
        return self.call("GET", self.PATH, token=self.root, timeout=timeout)

    def test_statuses_are_injected_for_n_requests_then_stop(self):
        for status in (500, 503):
            self.vault.fail_next("auth/token/", status=status, count=2)
            self.assertEqual(self.lookup()[0], status)
            self.assertEqual(self.lookup()[0], status)
            self.assertEqual(self.lookup()[0], 200)

    def test_429_carries_retry_after(self):
        self.vault.fail_next("/v1/auth/token/lookup-self", status=429, retry_after=3)
        status, response, body = self.lookup()
        self.assertEqual(status, 429)
        self.assertEqual(response.getheader("Retry-After"), "3")
        self.assertEqual(len(body["errors"]), 1)
        self.assertEqual(self.vault.requests()[0].fault, "status")

    def test_faults_only_touch_their_prefix(self):
        self.vault.fail_next("secret/", status=500)
        self.assertEqual(self.lookup()[0], 200)
        self.assertEqual(self.call("GET", "/v1/secret/data/x", token=self.root)[0], 500)

    def test_delay_holds_the_answer(self):
        self.vault.delay_next("auth/token/", 0.5)
        start = time.monotonic()
        self.assertEqual(self.lookup()[0], 200)
        self.assertGreaterEqual(time.monotonic() - start, 0.5)

    def test_delay_longer_than_the_client_timeout_times_it_out(self):
        self.vault.delay_next("auth/token/", 3)
        with self.assertRaises(TimeoutError):
            self.lookup(timeout=0.3)

    def test_truncate_cuts_the_body_after_headers(self):
        self.vault.truncate_next("auth/token/")
        with self.assertRaises(http.client.IncompleteRead):
            self.lookup()
        self.assertEqual(self.lookup()[0], 200)

    def test_truncated_renewal_still_takes_effect(self):
        token = self.vault.create_token(ttl=60)
        self.vault.truncate_next("auth/token/renew-self")
        with self.assertRaises(http.client.IncompleteRead):
            self.call("POST", "/v1/auth/token/renew-self", {"increment": 600}, token=token)
        self.assertIn(self.vault.token_ttl(token), (599, 600))

    def test_malformed_json_body(self):
        self.vault.malformed_next("auth/token/")
        with self.assertRaises(json.JSONDecodeError):
            self.lookup()

    def test_oversized_body(self):
        self.vault.oversized_next("auth/token/", size=3 << 20)
        status, response, body = self.lookup()
        self.assertEqual(status, 200)
        self.assertEqual(int(response.getheader("Content-Length")), 3 << 20)
        self.assertEqual(len(body["data"]["padding"]), (3 << 20) - 25)

    def test_drop_closes_without_an_answer(self):
        self.vault.drop_next("auth/token/")
        with self.assertRaises(http.client.RemoteDisconnected):
            self.lookup()
        self.assertEqual(self.vault.requests()[0].status, 0)

    def test_request_log_times_show_the_spacing_of_retries(self):
        self.vault.fail_next("auth/token/", status=503, count=2)
        for _ in range(3):
            self.lookup()
            time.sleep(0.2)
        times = [r.time for r in self.vault.requests("auth/token/lookup-self")]
        self.assertEqual([r.status for r in self.vault.requests()], [503, 503, 200])
        self.assertTrue(all(b - a >= 0.2 for a, b in zip(times, times[1:])))
        self.vault.clear_requests()
        self.assertEqual(self.vault.requests(), [])


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.certs = make_test_ca(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def serve(self, cert, key, client_ca=None):
        vault = VaultServer(certfile=cert, keyfile=key, client_ca=client_ca).start()
        self.addCleanup(vault.stop)
        return vault

    def get(self, url, context):
        with urllib.request.urlopen(url + "/v1/sys/health", context=context,
                                    timeout=TIMEOUT) as response:
            return response.status

    def trusting(self):
        return ssl.create_default_context(cafile=self.certs.ca_cert)

    def test_server_cert_verifies_for_ip_and_localhost(self):
        vault = self.serve(self.certs.server_cert, self.certs.server_key)
        self.assertTrue(vault.url.startswith("https://127.0.0.1:"))
        self.assertEqual(self.get(vault.url, self.trusting()), 200)
        self.assertEqual(self.get(f"https://localhost:{vault.port}", self.trusting()), 200)

    def test_wrong_name_cert_fails_verification(self):
        vault = self.serve(self.certs.wrong_name_cert, self.certs.wrong_name_key)
        with self.assertRaises(urllib.error.URLError) as caught:
            self.get(vault.url, self.trusting())
        self.assertIsInstance(caught.exception.reason, ssl.SSLCertVerificationError)

    def test_cert_from_an_untrusted_ca_fails_verification(self):
        vault = self.serve(self.certs.rogue_cert, self.certs.rogue_key)
        with self.assertRaises(urllib.error.URLError) as caught:
            self.get(vault.url, self.trusting())
        self.assertIsInstance(caught.exception.reason, ssl.SSLCertVerificationError)

    def test_client_certificate_is_required_when_asked(self):
        vault = self.serve(self.certs.server_cert, self.certs.server_key,
                           client_ca=self.certs.ca_cert)
        with self.assertRaises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            self.get(vault.url, self.trusting())
        context = self.trusting()
        context.load_cert_chain(self.certs.client_cert, self.certs.client_key)
        self.assertEqual(self.get(vault.url, context), 200)


class Program(unittest.TestCase):
    def test_runs_prints_url_and_ids_and_stops_on_sigterm(self):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vault_server.py")
        proc = subprocess.Popen([sys.executable, script, "--port", "0", "--print-url"],
                                stdout=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().strip()
            info = json.loads(proc.stdout.readline())
            self.assertTrue(url.startswith("http://127.0.0.1:"))
            self.assertEqual(info["url"], url)

            class Remote:
                pass
            remote = Remote()
            remote.url = url
            approle = info["approle"]
            status, _, body = call(remote, "POST", "/v1/auth/approle/login",
                                   {"role_id": approle["role_id"],
                                    "secret_id": approle["secret_id"]})
            self.assertEqual(status, 200)
            token = body["auth"]["client_token"]
            self.assertEqual(call(remote, "GET", "/v1/database/creds/app", token=token)[0], 200)

            fault = {"prefix": "database/", "kind": "status", "status": 503}
            self.assertEqual(call(remote, "POST", "/_test/faults", fault,
                                  token=info["root_token"])[0], 204)
            self.assertEqual(call(remote, "POST", "/_test/faults", fault, token=token)[0], 403)
            self.assertEqual(call(remote, "GET", "/v1/database/creds/app", token=token)[0], 503)
            _, _, body = call(remote, "GET", "/_test/requests?prefix=database/",
                              token=info["root_token"])
            self.assertEqual([r["status"] for r in body["requests"]], [200, 503])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                self.assertEqual(proc.wait(timeout=TIMEOUT), 0)
            finally:
                proc.kill()
                proc.stdout.close()


if __name__ == "__main__":
    unittest.main()
