"""The four steps of rotating a PostgreSQL role's password, for a keyturn rotation hook.

    result = handle(request)   # request and result as the hook protocol's JSON, as dicts

keyturn calls the hook once per step: `create` invents the new (pending) password, `set`
makes it the role's password, `test` logs in with it, and `finish` confirms it before
keyturn promotes it to current. Every step can run again after a crash or a retry and
reaches the same end.

Passwords stay in this process's memory: they go to libpq as connection arguments, never
through argv or the environment, and ALTER ROLE carries a SCRAM-SHA-256 verifier computed
here, so the server's statement log and pg_stat_activity never see a password. Error
messages have every value the request carried cut out before they are returned.

Standard library and psycopg2 only (Debian: python3-psycopg2).
"""

import base64
import binascii
import secrets

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

PASSWORD_BYTES = 32  # random bytes per password: 43 URL-safe characters
CONNECT_TIMEOUT = 10  # seconds; keyturn's hook timeout (default 30 s) should exceed it
STATEMENT_TIMEOUT_MS = 10000  # so a blocked ALTER ROLE fails before the hook times out
RETRY_AFTER = 5  # seconds; suggested wait after a failure the database may get over
REDACTED = "[redacted]"


class StepFailed(Exception):
    """A step could not be done; the message names the step and the cause."""

    def __init__(self, message, retry_after=RETRY_AFTER):
        super().__init__(message)
        self.retry_after = retry_after


class Request:
    """The parts of a hook request the steps use, with passwords decoded to text."""

    def __init__(self, raw):
        self.version = raw.get("version")
        self.secrets = []  # every value seen, in every spelling, to scrub from errors
        self.current = self._slot(raw, "current")
        self.previous = self._slot(raw, "previous")
        self.pending = self._slot(raw, "pending")
        self.pending_version = (raw.get("pending") or {}).get("version")
        self.target = self._target(raw.get("metadata") or {})

    def _slot(self, raw, name):
        """The password in raw[name] as text, or None when the slot is empty."""
        slot = raw.get(name)
        if not slot:
            return None
        if "value" in slot:
            self.secrets.append(slot["value"])
            return _non_empty(name, slot["value"])
        encoded = slot.get("value_base64")
        if encoded is None:
            raise StepFailed(f"{name} has neither value nor value_base64", retry_after=None)
        self.secrets.append(encoded)
        try:
            raw_bytes = base64.b64decode(encoded, validate=True)
            self.secrets.append(raw_bytes.decode("utf-8", errors="replace"))
            text = raw_bytes.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise StepFailed(f"{name}.value_base64 is not base64 of UTF-8 text, which a "
                             "PostgreSQL password must be", retry_after=None) from None
        return _non_empty(name, text)

    @staticmethod
    def _target(metadata):
        """Where to connect: host, port, dbname and role from the secret's metadata."""
        missing = [k for k in ("host", "port", "dbname", "role") if not metadata.get(k)]
        if missing:
            raise StepFailed("metadata lacks " + ", ".join(missing), retry_after=None)
        return metadata

    def scrub(self, text):
        """`text` with every value this request carried replaced; longest first, so a
        value that contains another is cut out whole."""
        for value in sorted(set(self.secrets), key=len, reverse=True):
            if value:
                text = text.replace(value, REDACTED)
        return text


def _non_empty(name, password):
    # libpq takes an empty password for none given and would look in PGPASSWORD and
    # ~/.pgpass instead, so an empty value must stop here.
    if not password:
        raise StepFailed(f"{name} value is empty", retry_after=None)
    return password


def handle(request):
    """Runs the step `request["step"]` and returns the hook result as a dict:
    {"value": ...} for create, {} for the other steps, {"error": ..., "retry_after": ...}
    on failure. Raises only on a bug."""
    step = request.get("step")
    parsed = None
    try:
        parsed = Request(request)
        run = STEPS.get(step)
        if run is None:
            raise StepFailed(f"unknown step {step!r}", retry_after=None)
        return run(parsed)
    except StepFailed as exc:
        return _failure(parsed, f"{step}: {exc}", exc.retry_after)
    except psycopg2.Error as exc:
        return _failure(parsed, f"{step}: {_describe(exc)}", RETRY_AFTER)


def _failure(parsed, message, retry_after):
    if parsed is not None:
        message = parsed.scrub(message)
    result = {"error": message}
    if retry_after is not None:
        result["retry_after"] = retry_after
    return result


# -- the steps ------------------------------------------------------------------------------

def create(req):
    """A new random password; the stored pending one when create runs again for the
    version it was made for."""
    if req.pending is not None and req.pending_version == req.version:
        return {"value": req.pending}
    return {"value": secrets.token_urlsafe(PASSWORD_BYTES)}


def set_password(req):
    """Makes the pending password the role's. Logs in with the current password, or with
    the previous one after a crash that left the database behind keyturn's journal; when
    the pending one already works, an earlier run did the work."""
    _require_pending(req)
    # Current first: on the usual path this is the only login, and a failed attempt
    # with the pending password would leave a needless authentication error in the log.
    tried = []
    for label, password in (("current", req.current), ("pending", req.pending),
                            ("previous", req.previous)):
        if password is None:
            continue
        tried.append(label)
        conn = _try_login(req, password)
        if conn is None:
            continue
        try:
            if label != "pending":
                _alter_password(req, conn)
        finally:
            conn.close()
        return {}
    raise StepFailed(f"role \"{req.target['role']}\" refused the {', '.join(tried)} "
                     "password; it needs a reset by an administrator", retry_after=None)


def test(req):
    """Logs in with the pending password and runs a query."""
    _require_pending(req)
    _check_login(req, req.pending, "pending")
    return {}


def finish(req):
    """Nothing changes in the database here; keyturn promotes pending to current. Checks
    that the password about to become current logs in; after promotion (a re-run with no
    pending), that the current one does."""
    if req.pending is not None:
        _check_login(req, req.pending, "pending")
    elif req.current is not None:
        _check_login(req, req.current, "current")
    else:
        raise StepFailed("neither a pending nor a current password to check",
                         retry_after=None)
    return {}


STEPS = {"create": create, "set": set_password, "test": test, "finish": finish}


# -- PostgreSQL -----------------------------------------------------------------------------

def _require_pending(req):
    if req.pending is None:
        raise StepFailed("no pending password in the request", retry_after=None)


def _connect(target, password):
    """A connection as the target role. The password reaches libpq as an argument in
    memory; libpq ignores PGPASSWORD and ~/.pgpass when one is given."""
    extra = {"sslmode": target["sslmode"]} if target.get("sslmode") else {}
    conn = psycopg2.connect(host=target["host"], port=target["port"],
                            dbname=target["dbname"], user=target["role"], password=password,
                            connect_timeout=CONNECT_TIMEOUT,
                            application_name="keyturn-rotation",
                            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}", **extra)
    conn.autocommit = True
    return conn


def _try_login(req, password):
    """A connection with `password`, or None when the server refuses that password.
    Any other failure (server down, no such database) is no answer about the password,
    so it stops the step."""
    try:
        return _connect(req.target, password)
    except psycopg2.OperationalError as exc:
        if _is_refused_password(exc):
            return None
        raise


def _check_login(req, password, label):
    conn = _try_login(req, password)
    if conn is None:
        raise StepFailed(f"role \"{req.target['role']}\" cannot log in with the {label} "
                         "password")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    finally:
        conn.close()


def _alter_password(req, conn):
    """Sets the role's password to the pending one through a SCRAM-SHA-256 verifier made
    on this side, so the statement carries no password."""
    role = req.target["role"]
    verifier = psycopg2.extensions.encrypt_password(req.pending, role, conn, "scram-sha-256")
    req.secrets.append(verifier)  # not the password, but it allows guessing it offline
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role),
                                                                  sql.Literal(verifier)))


def _is_refused_password(exc):
    # libpq reports a failed login as text only (no SQLSTATE reaches the client at
    # connect time), in English unless the server's lc_messages says otherwise.
    # Limitation: a server with translated messages makes every refused password look
    # like an outage, so set stops with a retry instead of trying the next password.
    return "password authentication failed" in str(exc)


def _describe(exc):
    """psycopg2's message on one line, without the statement echo some errors carry."""
    first = (getattr(exc, "pgerror", None) or str(exc)).strip().splitlines()
    text = first[0] if first else type(exc).__name__
    return text.removeprefix("FATAL:  ").removeprefix("ERROR:  ")
