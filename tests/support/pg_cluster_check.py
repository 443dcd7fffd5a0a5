"""Checks that the PgCluster fixture starts, authenticates by password and cleans up.

    PYTHONPATH=tests/support /usr/bin/python3 -m unittest -v pg_cluster_check
"""

import os
import socket
import sys
import time
import unittest
from contextlib import closing

from pg_cluster import PgCluster


class PgClusterCheck(unittest.TestCase):
    def test_starts_accepts_the_right_password_and_leaves_nothing_behind(self):
        started = time.monotonic()
        with PgCluster() as pg:
            ready = time.monotonic()
            base_dir = pg.base_dir
            host, port = pg.dsn_params()["host"], pg.dsn_params()["port"]

            pg.create_role("fixture_check", "kt-secret-PG-check-71c4")

            self.assertTrue(pg.can_login("fixture_check", "kt-secret-PG-check-71c4"))
            self.assertFalse(pg.can_login("fixture_check", "kt-secret-PG-wrong-71c4"))
            self.assertIn("fixture_check", pg.read_log())
            self.assertNotIn("kt-secret-PG-", pg.read_log())
        stopped = time.monotonic()

        self.assertEqual("127.0.0.1", host)
        self.assertFalse(os.path.exists(base_dir))
        with self.assertRaises(OSError):
            socket.create_connection((host, port), timeout=1).close()
        print(f"cluster start {ready - started:.2f}s, stop {stopped - ready:.2f}s ... ",
              end="", file=sys.stderr)

    def test_stops_and_deletes_everything_when_the_test_body_fails(self):
        with self.assertRaises(ZeroDivisionError):
            with PgCluster() as pg:
                base_dir, port = pg.base_dir, pg.port
                1 / 0

        self.assertFalse(os.path.exists(base_dir))
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_listens_on_loopback_only(self):
        with PgCluster() as pg, closing(pg.admin_connect()) as conn:
            with conn.cursor() as cur:
                cur.execute("SHOW listen_addresses")
                self.assertEqual("127.0.0.1", cur.fetchone()[0])


if __name__ == "__main__":
    unittest.main()
