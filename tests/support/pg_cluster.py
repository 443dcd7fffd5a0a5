"""A throwaway PostgreSQL cluster for one test run.

    with PgCluster() as pg:
        pg.create_role("app", "kt-secret-PG-initial-5d2e")
        assert pg.can_login("app", "kt-secret-PG-initial-5d2e")

The cluster lives in a fresh temporary directory, listens on 127.0.0.1 only (on a free
port) and on a Unix socket inside that directory, and is stopped and deleted on exit,
whether the test passed or not. Host connections need a SCRAM-SHA-256 password; the
socket trusts everyone, so the fixture administers as the bootstrap superuser without
one. Every statement is logged to `log_path`, so a test can check that no password ever
reached the server in plain text.

PostgreSQL refuses to run as root. Run as root (as in CI), the fixture runs initdb,
pg_ctl and the server as the `postgres` system user that Debian's package creates.

Needs the Debian packages `postgresql` and `python3-psycopg2` (scripts/setup.sh).
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SETUP_HINT = "install it with scripts/setup.sh (Debian packages postgresql, python3-psycopg2)"

try:
    import psycopg2
    import psycopg2.extensions
    from psycopg2 import sql
except ImportError as exc:  # a clear word instead of a bare traceback in CI
    raise ImportError(f"psycopg2 is missing for {sys.executable}: {SETUP_HINT}") from exc

ADMIN_USER = "postgres"  # the bootstrap superuser, whoever runs the server
SERVER_USER = "postgres"  # the unprivileged system user the server runs as under root
START_TIMEOUT = 30  # seconds; a start normally takes well under two
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it

# Settings for a server that only lives for one test: nothing here must survive a crash,
# so durability is traded for speed, and every statement is logged so tests can read it.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'16MB'",
    "max_connections": "20",
    "password_encryption": "'scram-sha-256'",
    "log_statement": "'all'",
    "log_connections": "on",
    "logging_collector": "off",
}

HBA = """\
# type  database  user  address       method
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
"""


class PostgresNotInstalled(RuntimeError):
    """PostgreSQL's server programs are not on this machine."""


def find_server_bin():
    """The bin directory of the newest PostgreSQL installed under /usr/lib/postgresql."""
    candidates = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
                  if os.access(os.path.join(d, "initdb"), os.X_OK)
                  and os.access(os.path.join(d, "pg_ctl"), os.X_OK)]
    if not candidates:
        raise PostgresNotInstalled(
            f"no initdb/pg_ctl under /usr/lib/postgresql/*/bin: {SETUP_HINT}")
    return max(candidates, key=lambda d: _version_key(os.path.basename(os.path.dirname(d))))


def _version_key(text):
    return [int(part) if part.isdigit() else 0 for part in text.split(".")]


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """A PostgreSQL cluster in a temporary directory; a context manager."""

    def __init__(self):
        self.bin_dir = find_server_bin()
        self.base_dir = None
        self.port = None
        self._account = None  # the pwd entry to run as, when running as root

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def start(self):
        """Creates and starts the cluster; on any failure, leaves nothing behind."""
        try:
            self._make_base_dir()
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self):
        """Stops the server at once and deletes the directory; safe to call twice."""
        if self.base_dir is None:
            return
        try:
            if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
                self._stop_server()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    @property
    def data_dir(self):
        return os.path.join(self.base_dir, "data")

    @property
    def log_path(self):
        """The server's log: every statement and connection, as the server saw them."""
        return os.path.join(self.base_dir, "server.log")

    def read_log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    # -- connections -----------------------------------------------------------------------

    def dsn_params(self):
        """Where clients connect over TCP: {"host": "127.0.0.1", "port": <int>}."""
        return {"host": "127.0.0.1", "port": self.port}

    def admin_connect(self):
        """An autocommit connection as the superuser, over the Unix socket, no password."""
        conn = psycopg2.connect(host=self.base_dir, port=self.port, dbname="postgres",
                                user=ADMIN_USER, connect_timeout=5)
        conn.autocommit = True
        return conn

    def create_role(self, name, password):
        """Creates a LOGIN role. The password is sent as a SCRAM verifier computed here,
        so the statement log never holds it in plain text."""
        with self.admin_connect() as conn, conn.cursor() as cur:
            verifier = psycopg2.extensions.encrypt_password(password, name, conn,
                                                            "scram-sha-256")
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier)))
        conn.close()  # `with conn` ends the transaction only

    def can_login(self, role, password):
        """Whether `role` can log in over TCP with `password`. Raises on any failure other
        than a refused password, so a dead server never reads as a wrong password."""
        try:
            conn = psycopg2.connect(dbname="postgres", user=role, password=password,
                                    connect_timeout=5, **self.dsn_params())
        except psycopg2.OperationalError as exc:
            if "password authentication failed" in str(exc):
                return False
            raise
        conn.close()
        return True

    # -- steps of start and stop -----------------------------------------------------------

    def _make_base_dir(self):
        self.base_dir = tempfile.mkdtemp(prefix="keyturn-pg-")
        if os.geteuid() == 0:
            try:
                self._account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresNotInstalled(
                    f"running as root needs the '{SERVER_USER}' system user: {SETUP_HINT}")
            os.chown(self.base_dir, self._account.pw_uid, self._account.pw_gid)

    def _initdb(self):
        self._run("initdb", "--pgdata", self.data_dir, "--username", ADMIN_USER,
                  "--auth-local", "trust", "--auth-host", "scram-sha-256",
                  "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
        with open(os.path.join(self.data_dir, "pg_hba.conf"), "w") as f:
            f.write(HBA)

    def _start_server(self):
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            self._write_settings()
            try:
                self._run("pg_ctl", "start", "--pgdata", self.data_dir, "--log", self.log_path,
                          "--wait", "--timeout", str(START_TIMEOUT))
                return
            except RuntimeError:
                if attempt == START_ATTEMPTS or not self._port_was_taken():
                    raise

    def _port_was_taken(self):
        return (os.path.exists(self.log_path)
                and "Address already in use" in self.read_log())

    def _write_settings(self):
        # postgresql.auto.conf is read last, so these win over initdb's postgresql.conf;
        # rewritten on each attempt because the port changes.
        settings = dict(SERVER_SETTINGS, port=str(self.port),
                        unix_socket_directories=f"'{self.base_dir}'")
        path = os.path.join(self.data_dir, "postgresql.auto.conf")
        with open(path, "w") as f:
            f.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _stop_server(self):
        try:
            self._run("pg_ctl", "stop", "--pgdata", self.data_dir, "--mode", "immediate",
                      "--wait", "--timeout", "10")
        except RuntimeError:
            self._kill_postmaster()

    def _kill_postmaster(self):
        """Last resort when pg_ctl cannot stop the server: kill it by its pid file."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)

    def _run(self, program, *args):
        """Runs a PostgreSQL program, as the server user when we are root. Raises
        RuntimeError with the program's output when it fails."""
        command = [os.path.join(self.bin_dir, program), *args]
        as_user = {}
        if self._account is not None:
            as_user = dict(user=self._account.pw_uid, group=self._account.pw_gid,
                           extra_groups=[])
        # The working directory must be one the server user can enter: initdb checks.
        done = subprocess.run(command, cwd=self.base_dir, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=START_TIMEOUT + 30, **as_user)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed with status {done.returncode}:\n"
                               f"{done.stdout.strip()}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
