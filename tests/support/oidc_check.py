"""Checks that the oidc-provider fixture behaves as keyturn's OAuth2 tests rely on.

    PYTHONPATH=tests/support python3 -m unittest -v oidc_check

A missing Node.js or npm package is an error naming scripts/setup.sh, never a skip.
"""

import json
import os
import socket
import threading
import time
import unittest
import urllib.request

from oidc_fixture import OidcNotInstalled, OidcServer

ACCESS_TOKEN_TTL = 3
REFRESHES = 20


class OidcProviderCheck(unittest.TestCase):
    def assert_token_response(self, status, body, ttl=ACCESS_TOKEN_TTL):
        self.assertEqual(200, status, body)
        self.assertEqual("Bearer", body["token_type"])
        self.assertTrue(body["access_token"])
        self.assertTrue(body["refresh_token"])
        # The lifetime left when the response was written: the TTL, or one second less
        # when a second boundary fell between issuing and answering.
        self.assertIn(body["expires_in"], (ttl - 1, ttl), body)

    def assert_invalid_grant(self, status, body):
        self.assertEqual(400, status, body)
        self.assertEqual("invalid_grant", body.get("error"), body)

    def test_refresh_rotates_every_time_and_reusing_a_used_token_revokes_the_grant(self):
        with OidcServer(access_token_ttl=ACCESS_TOKEN_TTL) as op:
            first = op.first_tokens()
            self.assert_token_response(200, first)
            self.assertIn("offline_access", first["scope"].split())

            used = []
            current = first["refresh_token"]
            access_tokens = {first["access_token"]}
            for i in range(REFRESHES):
                status, body = op.refresh(current)
                self.assert_token_response(status, body)
                self.assertNotEqual(current, body["refresh_token"], f"refresh {i + 1}")
                self.assertNotIn(body["refresh_token"], used, f"refresh {i + 1}")
                self.assertNotIn(body["access_token"], access_tokens, f"refresh {i + 1}")
                used.append(current)
                access_tokens.add(body["access_token"])
                current, newest_access = body["refresh_token"], body["access_token"]

            stats = op.stats()
            self.assertEqual(REFRESHES, stats["refresh_grants"], stats)
            self.assertEqual(REFRESHES, stats["refresh_tokens_consumed"], stats)
            self.assertEqual(0, stats["invalid_grant"], stats)
            self.assertEqual(0, stats["revoked_grants"], stats)
            self.assertTrue(op.introspect(newest_access)["active"])

            # A second use of the token just spent: refused, and the grant is revoked...
            status, body = op.refresh(used[-1])
            self.assert_invalid_grant(status, body)
            self.assertEqual("refresh token already used",
                             op.stats()["last_errors"][-1]["error_detail"])

            # ...so the newest refresh token and the newest access token die with it.
            status, body = op.refresh(current)
            self.assert_invalid_grant(status, body)
            self.assertFalse(op.introspect(newest_access)["active"])

            stats = op.stats()
            self.assertEqual(REFRESHES, stats["refresh_grants"], stats)
            self.assertEqual(2, stats["invalid_grant"], stats)
            self.assertEqual(1, stats["refresh_token_reuse"], stats)
            self.assertEqual(1, stats["revoked_grants"], stats)
            self.assertEqual(0, stats["server_errors"], stats)

    def test_reuse_of_an_older_token_revokes_the_grant_as_well(self):
        with OidcServer() as op:
            tokens = [op.first_tokens()["refresh_token"]]
            for _ in range(3):
                status, body = op.refresh(tokens[-1])
                self.assert_token_response(status, body)
                tokens.append(body["refresh_token"])

            self.assert_invalid_grant(*op.refresh(tokens[0]))
            self.assert_invalid_grant(*op.refresh(tokens[-1]))
            self.assertEqual(1, op.stats()["revoked_grants"])

    def test_the_same_token_sent_twice_at_once_is_caught_as_reuse(self):
        # Both requests reach the provider; it handles one token request from its parsed
        # body to the rotation without waiting on I/O (the store is in memory), so the
        # second one sees the token consumed. This holds for this fixture's in-memory
        # store, not for every oidc-provider deployment.
        with OidcServer() as op:
            token = op.first_tokens()["refresh_token"]
            start = threading.Barrier(2)
            statuses = []

            def refresh():
                start.wait(timeout=10)
                statuses.append(op.refresh(token)[0])

            threads = [threading.Thread(target=refresh) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)

            self.assertEqual([200, 400], sorted(statuses))
            stats = op.stats()
            self.assertEqual(1, stats["refresh_token_reuse"], stats)
            self.assertEqual(1, stats["revoked_grants"], stats)

    def test_client_secret_post_client_gets_and_refreshes_tokens(self):
        with OidcServer() as op:
            first = op.first_tokens(auth="post")
            self.assert_token_response(200, first)

            status, body = op.refresh(first["refresh_token"], auth="post")
            self.assert_token_response(status, body)
            self.assertNotEqual(first["refresh_token"], body["refresh_token"])

            status, body = op.refresh(body["refresh_token"], auth="post")
            self.assert_token_response(status, body)
            stats = op.stats()
            self.assertEqual(2, stats["refresh_grants"], stats)
            self.assertEqual(0, stats["invalid_grant"], stats)

    def test_each_client_must_authenticate_the_way_it_is_registered(self):
        with OidcServer() as op:
            basic_token = op.first_tokens(auth="basic")["refresh_token"]
            post_token = op.first_tokens(auth="post")["refresh_token"]

            status, body = op.token_request(
                {"grant_type": "refresh_token", "refresh_token": basic_token},
                auth="post", client=op.client("basic"))
            self.assertEqual((401, "invalid_client"), (status, body.get("error")), body)
            status, body = op.token_request(
                {"grant_type": "refresh_token", "refresh_token": post_token},
                auth="basic", client=op.client("post"))
            self.assertEqual((401, "invalid_client"), (status, body.get("error")), body)

            # A refused client authentication does not touch the refresh token.
            self.assert_token_response(*op.refresh(basic_token, auth="basic"))
            self.assert_token_response(*op.refresh(post_token, auth="post"))
            stats = op.stats()
            self.assertEqual(2, stats["invalid_client"], stats)
            self.assertEqual(2, stats["client_auth_method_mismatch"], stats)
            self.assertEqual(0, stats["invalid_grant"], stats)

    def test_access_token_is_inactive_once_its_ttl_has_passed(self):
        with OidcServer(access_token_ttl=2) as op:
            first = op.first_tokens()
            self.assertIn(first["expires_in"], (1, 2))
            self.assertTrue(op.introspect(first["access_token"])["active"])

            time.sleep(2.5)  # a real server's clock: there is no manual one to advance

            self.assertFalse(op.introspect(first["access_token"])["active"])
            self.assert_token_response(*op.refresh(first["refresh_token"]), ttl=2)

    def test_server_stops_and_frees_its_port_even_when_the_test_body_fails(self):
        with self.assertRaises(ZeroDivisionError):
            with OidcServer() as op:
                pid = op.pid
                port = int(op.issuer.rsplit(":", 1)[1])
                1 / 0

        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_printed_endpoints_are_the_ones_the_provider_publishes(self):
        with OidcServer() as op:
            with urllib.request.urlopen(
                    f"{op.issuer}/.well-known/openid-configuration", timeout=10) as resp:
                discovery = json.load(resp)

        self.assertEqual(op.issuer, discovery["issuer"])
        for name in ("authorization_endpoint", "token_endpoint", "introspection_endpoint",
                     "revocation_endpoint"):
            self.assertEqual(op.meta[name], discovery[name], name)
        self.assertIn("refresh_token", discovery["grant_types_supported"])
        self.assertEqual(["S256"], discovery["code_challenge_methods_supported"])
        self.assertIn("offline_access", discovery["scopes_supported"])

    def test_missing_node_fails_with_a_pointer_to_setup(self):
        with self.assertRaises(OidcNotInstalled) as caught:
            with OidcServer(node="/nonexistent/node"):
                pass
        self.assertIn("scripts/setup.sh", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
