"""A small Vault HTTP API server for testing keyturn's Vault providers.

    with VaultServer() as vault:
        token = vault.create_token(ttl=60, explicit_max_ttl=120)
        vault.fail_next("auth/token/renew-self", status=503, count=2)
        ...  # point the provider at vault.url, then assert on vault.requests(...)

It implements the parts of Vault's API that keyturn uses, shaped as Vault's HTTP API
documentation describes them (request envelope, `{"errors": [...]}` bodies, status codes):

- token auth: `auth/token/lookup-self`, `renew-self`, `revoke-self`, `create`,
  `create-orphan`; TTLs capped at the token's max TTL with Vault's warning;
- AppRole: `auth/approle/login` (roles are made with `add_approle`);
- a dynamic secret engine: `database/creds/<role>` hands out leased credentials;
- leases: `sys/leases/renew`, `sys/leases/revoke`, `sys/leases/lookup` (body or URL id);
- KV version 2 at `secret/`: `data/` (read, write with `options.cas`, delete), `delete/`,
  `undelete/`, `destroy/`, `metadata/` (read, write, delete, list);
- `sys/health` and `sys/internal/ui/mounts/<path>` (the mount preflight of Vault clients).

Every request except health and login needs `X-Vault-Token` (or `Authorization: Bearer`);
without a live token the answer is 403 `permission denied`. `X-Vault-Namespace` and
`X-Vault-Request` are recorded per request in `requests()`, which never holds a token or a
secret value. Fault knobs (`fail_next`, `delay_next`, `truncate_next`, `malformed_next`,
`oversized_next`, `drop_next`) apply to the next N requests under a path prefix. TTLs run
on the monotonic clock plus an offset that `advance(seconds)` moves forward.

Run as a program (`python3 vault_server.py --port 0 --print-url`) it prints the URL on its
first line, then one JSON line with the root token, an AppRole's ids and a database role,
and serves until SIGTERM. The same knobs are reachable over HTTP under `/_test/` (root
token only; see `_CONTROL`), for tests that drive it as a process.

Where it deviates from Vault, on purpose:
- Policies are lists of allowed path prefixes per token (`paths`, None = everything), with
  no capabilities; the paths of Vault's built-in `default` policy are always allowed.
- No storage, seal, replication, response wrapping, periodic tokens, num_uses, batch
  tokens, CIDR bindings or secret-ID TTLs. Namespaces are not hierarchical: when the
  server is given a namespace, every request must name exactly it, else 403.
- Vault revokes an expired lease moments after its TTL ends; this server keeps the entry,
  so renewing it answers 400 `lease expired` (the check Vault makes before revocation)
  rather than the `lease not found or lease is not renewable` of a later call.
- Newer Vault versions may answer a bad token with a multi-error string that contains
  `permission denied`; this server sends exactly `["permission denied"]`.
"""

import argparse
import json
import re
import secrets
import signal
import socket
import ssl
import string
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SYSTEM_MAX_TTL = 768 * 3600  # Vault's default max_lease_ttl and default_lease_ttl: 32 days
KV_DEFAULT_MAX_VERSIONS = 10  # KV v2 keeps 10 versions when max_versions is 0
OVERSIZED_BODY = 8 << 20  # bytes in an `oversized_next` answer unless told otherwise
MAX_REQUEST_BODY = 1 << 20

# Paths Vault's built-in `default` policy grants to every token.
DEFAULT_POLICY_PATHS = ("auth/token/lookup-self", "auth/token/renew-self",
                        "auth/token/revoke-self", "sys/leases/renew", "sys/leases/lookup",
                        "sys/renew")
UNAUTHENTICATED = ("sys/health", "auth/approle/login")
FAULT_KINDS = ("status", "delay", "truncate", "malformed", "oversized", "drop")
# Bodies for injected statuses, as Vault words them.
FAULT_ERRORS = {429: "rate limit quota exceeded", 500: "internal error", 503: "Vault is sealed"}
_BASE62 = string.ascii_letters + string.digits


class VaultError(Exception):
    """An answer other than success: a status and Vault's `errors` list (or a whole body)."""

    def __init__(self, status, *errors, body=None):
        super().__init__(status, errors)
        self.status, self.errors, self.body = status, list(errors), body


def _random(n=24):
    return "".join(secrets.choice(_BASE62) for _ in range(n))


def parse_duration(value):
    """Seconds from an int, a number string ("3600") or a Go-style duration ("1h30m")."""
    if isinstance(value, bool):
        raise VaultError(400, f"invalid duration: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise VaultError(400, f"error parsing duration {text!r}")
    return int(sum(float(n) * units[u] for n, u in parts))


def go_duration(seconds):
    """Go's time.Duration text for whole seconds ("1h0m0s", "2m5s", "30s"): Vault's
    warnings print durations with Go's %q, so this is what its messages contain."""
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    return f"{m}m{s}s" if m else f"{s}s"


def capped_warning(requested, granted):
    # Vault's own sentence (sdk/framework CalculateTTL), with Go's quoted durations.
    return (f'TTL of "{go_duration(requested)}" exceeded the effective max_ttl of '
            f'"{go_duration(granted)}"; TTL value is capped accordingly')


@dataclass
class Token:
    id: str
    accessor: str
    policies: list
    paths: object  # list of allowed path prefixes; None: everything (root)
    issued: float  # server clock
    expires: object  # server clock, or None for a token that never expires
    creation_ttl: int
    explicit_max_ttl: int = 0
    backend_max_ttl: int = 0  # the auth method's max (AppRole token_max_ttl)
    backend_ttl: int = 0  # what a renewal without increment asks for
    renewable: bool = True
    path: str = "auth/token/create"
    meta: object = None
    display_name: str = "token"
    parent: object = None  # the parent token's id; None for orphans
    last_renewal: object = None
    revoked: bool = False


@dataclass
class Lease:
    id: str
    owner: str  # id of the token that created it: its end ends the lease
    issued: float
    expires: float
    max_ttl: int
    default_ttl: int
    renewable: bool = True
    last_renewal: object = None


@dataclass
class KvVersion:
    data: object
    created: float
    deleted: object = None
    destroyed: bool = False


@dataclass
class KvEntry:
    created: float
    updated: float
    versions: dict = field(default_factory=dict)
    current: int = 0
    oldest: int = 0
    max_versions: int = 0
    cas_required: bool = False
    custom_metadata: object = None


@dataclass
class Fault:
    prefix: str
    kind: str
    remaining: int
    status: int = 503
    retry_after: object = None
    seconds: float = 0.0
    size: int = OVERSIZED_BODY


@dataclass
class RequestRecord:
    """One request as the server saw it; no header values but the namespace."""

    method: str
    path: str  # e.g. "/v1/auth/token/renew-self", without the query
    namespace: object
    vault_request: bool  # X-Vault-Request: true was sent
    had_token: bool
    time: float  # time.monotonic() at arrival: real time, untouched by advance()
    status: int = 0  # 0 when the connection was cut before a status line
    fault: object = None


def _envelope(data=None, auth=None, warnings=None, lease_id="", lease_duration=0,
              renewable=False):
    return {"request_id": str(uuid.uuid4()), "lease_id": lease_id, "renewable": renewable,
            "lease_duration": lease_duration, "data": data, "wrap_info": None,
            "warnings": warnings or None, "auth": auth}


class VaultServer:
    """A Vault API server on 127.0.0.1, run on a background thread. Thread-safe."""

    def __init__(self, port=0, certfile=None, keyfile=None, client_ca=None, namespace=None,
                 max_lease_ttl=SYSTEM_MAX_TTL, default_lease_ttl=SYSTEM_MAX_TTL):
        self.namespace = namespace.strip("/") if namespace else None
        self.max_lease_ttl, self.default_lease_ttl = max_lease_ttl, default_lease_ttl
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._offset = 0.0
        self._tokens, self._leases = {}, {}
        self._approles, self._db_roles, self._kv = {}, {}, {}
        self._faults, self._log, self._connections = [], [], set()
        self.root_token = self._new_token(ttl=0, policies=["root"], paths=None,
                                          path="auth/token/root", display_name="root")
        self._httpd = _QuietServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.vault = self
        scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            if client_ca:
                context.load_verify_locations(client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
            # The handshake runs on the connection's own thread (see _Handler.setup), so a
            # client that stalls or fails it never blocks the accepting thread.
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True,
                                                     do_handshake_on_connect=False)
            scheme = "https"
        self.port = self._httpd.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = None

    # -- lifetime ---------------------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops serving and cuts every open connection (kept-alive ones included)."""
        self._stopping.set()
        if self._thread:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- clock ------------------------------------------------------------------------------

    def now(self):
        """The server's clock: monotonic seconds plus what advance() added."""
        with self._lock:
            return time.monotonic() + self._offset

    def advance(self, seconds):
        """Moves the server's clock forward, so TTLs run out without waiting."""
        with self._lock:
            self._offset += seconds

    def _wall(self, t):
        return time.time() + (t - self.now())

    def _rfc3339(self, t):
        if t is None:
            return None
        return datetime.fromtimestamp(self._wall(t), timezone.utc).isoformat().replace(
            "+00:00", "Z")

    def _ttl_left(self, expires):
        return 0 if expires is None else max(0, int(expires - self.now() + 0.5))

    # -- fixtures ---------------------------------------------------------------------------

    def create_token(self, ttl=3600, explicit_max_ttl=0, renewable=True,
                     policies=("default",), paths=None, parent=None, token_id=None):
        """A new service token; `paths=None` lets it reach every path. Returns its id, which
        is `token_id` when given (as the `id` a root token may choose in Vault)."""
        return self._new_token(ttl=ttl, explicit_max_ttl=explicit_max_ttl, renewable=renewable,
                               policies=list(policies), paths=paths, parent=parent,
                               token_id=token_id)

    def revoke_token(self, token_id):
        with self._lock:
            if token_id in self._tokens:
                self._tokens[token_id].revoked = True

    def token_ttl(self, token_id):
        """Seconds left on a token (0 for one that never expires), None once it is dead."""
        with self._lock:
            token = self._live_token(token_id)
            return None if token is None else self._ttl_left(token.expires)

    def add_approle(self, name, token_ttl=3600, token_max_ttl=0, policies=("default",),
                    paths=None, role_id=None, secret_id=None):
        """An AppRole whose logins make tokens as described; returns (role_id, secret_id)."""
        with self._lock:
            role = {"name": name, "role_id": role_id or str(uuid.uuid4()),
                    "secret_id": secret_id or str(uuid.uuid4()), "token_ttl": token_ttl,
                    "token_max_ttl": token_max_ttl, "policies": list(policies),
                    "paths": paths}
            self._approles[role["role_id"]] = role
            return role["role_id"], role["secret_id"]

    def add_database_role(self, name, default_ttl=3600, max_ttl=0, renewable=True):
        with self._lock:
            self._db_roles[name] = {"default_ttl": default_ttl, "max_ttl": max_ttl,
                                    "renewable": renewable}

    def lease_ttl(self, lease_id):
        """Seconds left on a lease, None once it is revoked or unknown."""
        with self._lock:
            lease = self._live_lease(lease_id)
            return None if lease is None else self._ttl_left(lease.expires)

    def put_secret(self, path, data):
        """Writes a KV v2 version at `secret/data/<path>`; returns the version number."""
        return self._kv_write(path, {"data": data})["version"]

    # -- fault knobs ------------------------------------------------------------------------

    def inject(self, prefix, kind, count=1, **params):
        """The next `count` requests under `prefix` (a Vault path such as "auth/token/",
        with or without "/v1/") meet fault `kind`; faults queue in order of injection."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        prefix = prefix[len("/v1/"):] if prefix.startswith("/v1/") else prefix.lstrip("/")
        with self._lock:
            self._faults.append(Fault(prefix=prefix, kind=kind, remaining=count, **params))

    def fail_next(self, prefix, status=503, count=1, retry_after=None):
        """Answers `status` (500, 503, 429...) with Vault's error body; Retry-After if set."""
        self.inject(prefix, "status", count, status=status, retry_after=retry_after)

    def delay_next(self, prefix, seconds, count=1):
        """Waits `seconds`, then answers normally."""
        self.inject(prefix, "delay", count, seconds=seconds)

    def truncate_next(self, prefix, count=1):
        """Carries the request out, then sends the headers and only half of the body."""
        self.inject(prefix, "truncate", count)

    def malformed_next(self, prefix, count=1):
        """Answers 200 with a JSON body cut short (nothing is carried out)."""
        self.inject(prefix, "malformed", count)

    def oversized_next(self, prefix, size=OVERSIZED_BODY, count=1):
        """Answers 200 with a valid JSON body of `size` bytes."""
        self.inject(prefix, "oversized", count, size=size)

    def drop_next(self, prefix, count=1):
        """Closes the connection without answering."""
        self.inject(prefix, "drop", count)

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def _take_fault(self, vpath):
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and vpath.startswith(fault.prefix):
                    fault.remaining -= 1
                    return Fault(**{**asdict(fault), "remaining": 0})
            return None

    # -- request log ------------------------------------------------------------------------

    def requests(self, prefix=None):
        """Copies of the records of requests so far, optionally only those under a Vault
        path prefix ("auth/token/renew-self")."""
        with self._lock:
            return [RequestRecord(**asdict(r)) for r in self._log
                    if prefix is None or r.path[len("/v1/"):].startswith(prefix)]

    def clear_requests(self):
        with self._lock:
            self._log.clear()

    def _record(self, record):
        with self._lock:
            self._log.append(record)

    # -- tokens -----------------------------------------------------------------------------

    def _new_token(self, ttl, policies, paths, explicit_max_ttl=0, backend_max_ttl=0,
                   renewable=True, parent=None, path="auth/token/create", meta=None,
                   display_name="token", token_id=None):
        with self._lock:
            if ttl:
                cap = min(t for t in (self.max_lease_ttl, explicit_max_ttl, backend_max_ttl)
                          if t > 0)
                ttl = min(ttl, cap)
            now = self.now()
            token = Token(id=token_id or "hvs." + _random(), accessor=_random(),
                          policies=policies,
                          paths=paths, issued=now, expires=now + ttl if ttl else None,
                          creation_ttl=ttl, explicit_max_ttl=explicit_max_ttl,
                          backend_max_ttl=backend_max_ttl, backend_ttl=ttl,
                          renewable=renewable and bool(ttl), path=path, meta=meta,
                          display_name=display_name, parent=parent)
            self._tokens[token.id] = token
            return token.id

    def _live_token(self, token_id):
        """The token if it and all its ancestors are neither revoked nor expired."""
        token = self._tokens.get(token_id)
        if token is None:
            return None
        current, now = token, self.now()
        while current is not None:
            if current.revoked or (current.expires is not None and now >= current.expires):
                return None
            current = self._tokens.get(current.parent) if current.parent else None
        return token

    def _auth_block(self, token):
        return {"client_token": token.id, "accessor": token.accessor,
                "policies": token.policies, "token_policies": token.policies,
                "metadata": token.meta, "lease_duration": self._ttl_left(token.expires),
                "renewable": token.renewable, "entity_id": "", "token_type": "service",
                "orphan": token.parent is None, "mfa_requirement": None, "num_uses": 0}

    def _calculate_ttl(self, increment, backend_ttl, start, max_ttls):
        """Vault's CalculateTTL: the granted TTL and warnings; the lease may not outlive
        start + the smallest max TTL (whole seconds, as Vault truncates times)."""
        now, start = int(self.now()), int(start)
        max_ttl = min(t for t in (self.max_lease_ttl, *max_ttls) if t > 0)
        ttl = increment if increment > 0 else backend_ttl or self.default_lease_ttl
        left = start + max_ttl - now
        if left < 0:
            raise VaultError(500, "past the max TTL, cannot renew")
        if ttl > left:
            return left, [capped_warning(ttl, left)]
        return ttl, []

    def _lookup_self(self, token, body, query):
        data = {"accessor": token.accessor, "creation_time": int(self._wall(token.issued)),
                "creation_ttl": token.creation_ttl, "display_name": token.display_name,
                "entity_id": "", "expire_time": self._rfc3339(token.expires),
                "explicit_max_ttl": token.explicit_max_ttl, "id": token.id,
                "issue_time": self._rfc3339(token.issued), "meta": token.meta, "num_uses": 0,
                "orphan": token.parent is None, "path": token.path,
                "policies": token.policies, "renewable": token.renewable,
                "ttl": self._ttl_left(token.expires), "type": "service"}
        if token.last_renewal is not None:
            data["last_renewal"] = self._rfc3339(token.last_renewal)
            data["last_renewal_time"] = int(self._wall(token.last_renewal))
        return 200, _envelope(data=data)

    def _renew_self(self, token, body, query):
        if token.expires is None:  # root and other TTL-less tokens have no lease to renew
            raise VaultError(400, "lease not found or lease is not renewable")
        if not token.renewable:
            raise VaultError(400, "lease is not renewable")
        increment = parse_duration(body.get("increment", 0))
        ttl, warnings = self._calculate_ttl(increment, token.backend_ttl, token.issued,
                                            (token.explicit_max_ttl, token.backend_max_ttl))
        now = self.now()
        token.expires, token.last_renewal = now + ttl, now
        return 200, _envelope(auth=self._auth_block(token), warnings=warnings)

    def _revoke_self(self, token, body, query):
        token.revoked = True  # children and leases follow: _live_token/_live_lease check
        return 204, None

    def _create_token(self, token, body, query, orphan=False):
        policies = body.get("policies") or token.policies
        paths = token.paths
        if token.paths is None and "paths" in body:  # test-only extension for root callers
            paths = body["paths"]
        new_id = self._new_token(
            ttl=parse_duration(body.get("ttl", self.default_lease_ttl)),
            explicit_max_ttl=parse_duration(body.get("explicit_max_ttl", 0)),
            renewable=bool(body.get("renewable", True)), policies=list(policies),
            paths=paths, parent=None if orphan or body.get("no_parent") else token.id,
            meta=body.get("meta"),
            display_name="-".join(filter(None, ("token", body.get("display_name")))))
        return 200, _envelope(auth=self._auth_block(self._tokens[new_id]))

    def _approle_login(self, token, body, query):
        role_id = str(body.get("role_id", "")).strip()
        if not role_id:
            raise VaultError(400, "missing role_id")
        role = self._approles.get(role_id)
        if role is None:
            raise VaultError(400, "invalid role or secret ID")
        secret_id = str(body.get("secret_id", "")).strip()
        if not secret_id:
            raise VaultError(400, "missing secret_id")
        if not secrets.compare_digest(secret_id, role["secret_id"]):
            raise VaultError(400, "invalid role or secret ID")
        new_id = self._new_token(
            ttl=role["token_ttl"] or self.default_lease_ttl, backend_max_ttl=role["token_max_ttl"],
            policies=["default", *[p for p in role["policies"] if p != "default"]],
            paths=role["paths"], path="auth/approle/login", meta={"role_name": role["name"]},
            display_name="approle")
        new = self._tokens[new_id]
        new.backend_ttl = role["token_ttl"]  # AppRole renews to token_ttl when not told
        return 200, _envelope(auth=self._auth_block(new))

    # -- leases -----------------------------------------------------------------------------

    def _live_lease(self, lease_id):
        lease = self._leases.get(lease_id)
        if lease is None or self._live_token(lease.owner) is None:
            return None
        return lease

    def _db_creds(self, token, body, query, role):
        spec = self._db_roles.get(role)
        if spec is None:
            raise VaultError(400, f"unknown role: {role}")
        now = self.now()
        ttl, _ = self._calculate_ttl(0, spec["default_ttl"], now, (spec["max_ttl"],))
        lease = Lease(id=f"database/creds/{role}/{_random()}", owner=token.id, issued=now,
                      expires=now + ttl, max_ttl=spec["max_ttl"],
                      default_ttl=spec["default_ttl"], renewable=spec["renewable"])
        self._leases[lease.id] = lease
        data = {"username": f"v-approle-{role}-{_random(20)}", "password": _random(20)}
        return 200, _envelope(data=data, lease_id=lease.id, lease_duration=ttl,
                              renewable=lease.renewable)

    def _lease_id(self, body, tail):
        lease_id = body.get("lease_id") or tail
        if not lease_id:
            raise VaultError(400, "lease_id must be specified")
        return lease_id

    def _lease_renew(self, token, body, query, tail=""):
        lease = self._live_lease(self._lease_id(body, tail))
        if lease is None:
            raise VaultError(400, "lease not found or lease is not renewable")
        if self.now() >= lease.expires:
            raise VaultError(400, "lease expired")
        if not lease.renewable:
            raise VaultError(400, "lease is not renewable")
        increment = parse_duration(body.get("increment", 0))
        ttl, warnings = self._calculate_ttl(increment, lease.default_ttl, lease.issued,
                                            (lease.max_ttl,))
        now = self.now()
        lease.expires, lease.last_renewal = now + ttl, now
        return 200, _envelope(lease_id=lease.id, lease_duration=ttl, renewable=True,
                              warnings=warnings)

    def _lease_revoke(self, token, body, query, tail=""):
        self._leases.pop(self._lease_id(body, tail), None)  # unknown ids revoke silently
        return 204, None

    def _lease_lookup(self, token, body, query, tail=""):
        lease = self._live_lease(self._lease_id(body, tail))
        if lease is None:
            raise VaultError(400, "invalid lease")
        data = {"id": lease.id, "issue_time": self._rfc3339(lease.issued),
                "expire_time": self._rfc3339(lease.expires),
                "last_renewal_time": self._rfc3339(lease.last_renewal),
                "renewable": lease.renewable, "ttl": self._ttl_left(lease.expires)}
        return 200, _envelope(data=data)

    # -- KV version 2 -----------------------------------------------------------------------

    def _version_meta(self, entry, n):
        v = entry.versions[n]
        return {"created_time": self._rfc3339(v.created), "custom_metadata":
                entry.custom_metadata, "deletion_time": self._rfc3339(v.deleted) or "",
                "destroyed": v.destroyed, "version": n}

    def _kv_read(self, token, body, query, path):
        entry = self._kv.get(path)
        try:
            n = int(query.get("version", ["0"])[0] or 0)
        except ValueError:
            raise VaultError(400, "version must be an integer") from None
        if entry is None or (n or entry.current) not in entry.versions:
            raise VaultError(404)
        n = n or entry.current
        v, meta = entry.versions[n], self._version_meta(entry, n)
        if v.destroyed or v.deleted is not None:  # Vault answers 404 but keeps the metadata
            raise VaultError(404, body=_envelope(data={"data": None, "metadata": meta}))
        return 200, _envelope(data={"data": v.data, "metadata": meta})

    def _kv_write(self, path, body):
        data = body.get("data")
        if not isinstance(data, dict):
            raise VaultError(400, "no data provided")
        cas = (body.get("options") or {}).get("cas")
        if cas is not None and not str(cas).isdigit():
            raise VaultError(400, f"invalid check-and-set parameter: {cas!r}")
        entry = self._kv.get(path)
        if cas is None and entry is not None and entry.cas_required:
            raise VaultError(400, "check-and-set parameter required for this call")
        if cas is not None and int(cas) != (entry.current if entry else 0):
            raise VaultError(400, "check-and-set parameter did not match the current version")
        now = self.now()
        if entry is None:
            entry = self._kv[path] = KvEntry(created=now, updated=now)
        entry.current += 1
        entry.updated = now
        entry.versions[entry.current] = KvVersion(data=dict(data), created=now)
        while len(entry.versions) > (entry.max_versions or KV_DEFAULT_MAX_VERSIONS):
            del entry.versions[min(entry.versions)]
            entry.oldest = min(entry.versions)
        return self._version_meta(entry, entry.current)

    def _kv_data_write(self, token, body, query, path):
        return 200, _envelope(data=self._kv_write(path, body))

    def _kv_data_delete(self, token, body, query, path):
        entry = self._kv.get(path)  # soft-deletes the latest version
        if entry and entry.current in entry.versions:
            entry.versions[entry.current].deleted = self.now()
        return 204, None

    def _kv_versions(self, token, body, query, action, path):
        entry = self._kv.get(path)
        versions = body.get("versions")
        if not versions:
            raise VaultError(400, "no version number provided")
        for n in (int(x) for x in versions):
            v = entry.versions.get(n) if entry else None
            if v is None:
                continue
            if action == "delete" and not v.destroyed:
                v.deleted = v.deleted or self.now()
            elif action == "undelete" and not v.destroyed:
                v.deleted = None
            elif action == "destroy":
                v.destroyed, v.data = True, None
        return 204, None

    def _kv_list(self, token, body, query, path):
        prefix = path if path.endswith("/") or not path else path + "/"
        keys = sorted({k[len(prefix):].split("/")[0] + ("/" if "/" in k[len(prefix):] else "")
                       for k in self._kv if k.startswith(prefix)})
        if not keys:
            raise VaultError(404)
        return 200, _envelope(data={"keys": keys})

    def _kv_metadata_delete(self, token, body, query, path):
        self._kv.pop(path, None)
        return 204, None

    def _kv_metadata_write(self, token, body, query, path):
        entry = self._kv.get(path)
        if entry is None:
            now = self.now()
            entry = self._kv[path] = KvEntry(created=now, updated=now)
        entry.max_versions = int(body.get("max_versions", entry.max_versions))
        entry.cas_required = bool(body.get("cas_required", entry.cas_required))
        entry.custom_metadata = body.get("custom_metadata", entry.custom_metadata)
        return 204, None

    def _kv_metadata(self, token, body, query, path):
        entry = self._kv.get(path)
        if entry is None:
            raise VaultError(404)
        versions = {str(n): {"created_time": self._rfc3339(v.created), "deletion_time":
                             self._rfc3339(v.deleted) or "", "destroyed": v.destroyed}
                    for n, v in entry.versions.items()}
        data = {"cas_required": entry.cas_required, "created_time": self._rfc3339(entry.created),
                "current_version": entry.current, "custom_metadata": entry.custom_metadata,
                "delete_version_after": "0s", "max_versions": entry.max_versions,
                "oldest_version": entry.oldest, "updated_time": self._rfc3339(entry.updated),
                "versions": versions}
        return 200, _envelope(data=data)

    # -- routing ----------------------------------------------------------------------------

    def _health(self, token, body, query):
        return 200, {"initialized": True, "sealed": False, "standby": False,
                     "server_time_utc": int(time.time()), "version": "1.15.0+keyturn-test"}

    def _mount_info(self, token, body, query, path):
        if not (path + "/").startswith("secret/"):  # Vault's words for a path in no mount
            raise VaultError(403, "preflight capability check returned 403, please ensure "
                                  f"client's policies grant access to path {json.dumps(path)}")
        return 200, _envelope(data={"type": "kv", "path": "secret/", "options": {"version": "2"}})

    # (operations, pattern, handler); a handler gets (token, body, query, *groups). The
    # first route whose pattern and operation both match serves the request.
    _ROUTES = [
        ({"read"}, r"sys/health", _health),
        ({"write"}, r"auth/approle/login", _approle_login),
        ({"read"}, r"auth/token/lookup-self", _lookup_self),
        ({"write"}, r"auth/token/renew-self", _renew_self),
        ({"write"}, r"auth/token/revoke-self", _revoke_self),
        ({"write"}, r"auth/token/create", _create_token),
        ({"write"}, r"auth/token/create-orphan",
         lambda self, t, b, q: self._create_token(t, b, q, orphan=True)),
        ({"read"}, r"database/creds/([^/]+)", _db_creds),
        ({"write"}, r"sys/(?:leases/)?renew/?(.*)", _lease_renew),
        ({"write"}, r"sys/leases/revoke/?(.*)", _lease_revoke),
        ({"write"}, r"sys/leases/lookup/?(.*)", _lease_lookup),
        ({"read"}, r"sys/internal/ui/mounts/(.+)", _mount_info),
        ({"read"}, r"secret/data/(.+)", _kv_read),
        ({"write"}, r"secret/data/(.+)", _kv_data_write),
        ({"delete"}, r"secret/data/(.+)", _kv_data_delete),
        ({"write"}, r"secret/(delete|undelete|destroy)/(.+)", _kv_versions),
        ({"list"}, r"secret/metadata/?(.*)", _kv_list),
        ({"read"}, r"secret/metadata/(.+)", _kv_metadata),
        ({"write"}, r"secret/metadata/(.+)", _kv_metadata_write),
        ({"delete"}, r"secret/metadata/(.+)", _kv_metadata_delete),
    ]

    def _allowed(self, token, vpath):
        if token.paths is None or vpath in DEFAULT_POLICY_PATHS:
            return True
        return any(vpath.startswith(p) for p in token.paths)

    def dispatch(self, method, vpath, query, headers, raw_body):
        """Carries out one Vault API request; returns (status, JSON body or None)."""
        op = {"GET": "read", "POST": "write", "PUT": "write", "DELETE": "delete",
              "LIST": "list"}.get(method)
        if op == "read" and query.get("list", [""])[0] == "true":
            op = "list"
        try:
            body = json.loads(raw_body) if raw_body.strip() else {}
        except ValueError as exc:
            raise VaultError(400, f"failed to parse JSON input: {exc}") from None
        if not isinstance(body, dict):
            body = {}
        namespace = (headers.get("X-Vault-Namespace") or "").strip("/")
        if self.namespace and namespace != self.namespace:
            raise VaultError(403, "permission denied")
        with self._lock:
            token = None
            if vpath not in UNAUTHENTICATED:
                token = self._live_token(_client_token(headers))
                if token is None or not self._allowed(token, vpath):
                    raise VaultError(403, "permission denied")
            routed = False
            for ops, pattern, handler in self._ROUTES:
                match = re.fullmatch(pattern, vpath)
                routed = routed or match is not None
                if match and op in ops:
                    return handler(self, token, body, query, *match.groups())
        if routed:
            raise VaultError(405, "unsupported operation")
        raise VaultError(404, f"no handler for route \"{vpath}\". route entry not found.")

    # -- control API for tests that run the server as a process ---------------------------

    def control(self, method, name, body, query):
        """The /_test/ endpoints: the Python API over HTTP. Returns (status, body)."""
        if (method, name) == ("GET", "requests"):
            records = self.requests(query.get("prefix", [None])[0])
            return 200, {"requests": [asdict(r) for r in records]}
        actions = {
            ("DELETE", "requests"): lambda: self.clear_requests(),
            ("POST", "faults"): lambda: self.inject(**body),
            ("DELETE", "faults"): lambda: self.clear_faults(),
            ("POST", "advance"): lambda: self.advance(float(body["seconds"])),
            ("POST", "tokens"): lambda: {"token": self.create_token(**body)},
            ("POST", "approles"): lambda: dict(zip(("role_id", "secret_id"),
                                                   self.add_approle(**body))),
            ("POST", "database-roles"): lambda: self.add_database_role(**body),
        }
        if (method, name) not in actions:
            raise VaultError(404, f"no test control {method} /_test/{name}")
        try:
            result = actions[(method, name)]()
        except (TypeError, ValueError, KeyError) as exc:
            raise VaultError(400, f"bad control request: {exc}") from None
        return (200, result) if isinstance(result, dict) else (204, None)


def _client_token(headers):
    token = headers.get("X-Vault-Token")
    auth = headers.get("Authorization") or ""
    if not token and auth.startswith("Bearer "):
        token = auth[len("Bearer "):]
    return (token or "").strip()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Vault's Go server
    server_version = "keyturn-vault-test"
    sys_version = ""
    timeout = 30  # seconds an idle kept-alive connection may wait for its next request

    def setup(self):
        super().setup()
        vault = self.server.vault
        with vault._lock:
            vault._connections.add(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (OSError, ssl.SSLError):
                with vault._lock:
                    vault._connections.discard(self.connection)
                raise

    def finish(self):
        with self.server.vault._lock:
            self.server.vault._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, *args):  # quiet: tests read requests() instead
        pass

    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_DELETE = do_LIST = do_GET

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            raise VaultError(413, "request body too large")
        return self.rfile.read(length)

    def _serve(self):
        vault = self.server.vault
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            raw_body = self._read_body()
        except VaultError as exc:
            self.close_connection = True
            return self._send(exc.status, {"errors": exc.errors})
        if url.path.startswith("/_test/"):
            return self._control(vault, url.path[len("/_test/"):], raw_body, query)
        record = RequestRecord(
            method=self.command, path=url.path, namespace=self.headers.get("X-Vault-Namespace"),
            vault_request=(self.headers.get("X-Vault-Request") or "").lower() == "true",
            had_token=bool(_client_token(self.headers)), time=time.monotonic())
        vault._record(record)
        vpath = url.path[len("/v1/"):] if url.path.startswith("/v1/") else None
        fault = vault._take_fault(vpath) if vpath is not None else None
        if fault:
            record.fault = fault.kind
            if self._apply_fault(vault, fault, record):
                return
        try:
            if vpath is None:
                raise VaultError(404)
            status, body = vault.dispatch(self.command, vpath, query, self.headers, raw_body)
        except VaultError as exc:
            status, body = exc.status, exc.body or {"errors": exc.errors}
        except Exception as exc:  # a bug here: answer as Vault does for internal errors
            status, body = 500, {"errors": [f"internal error: {exc!r}"]}
        record.status = status
        self._send(status, body, truncate=fault is not None and fault.kind == "truncate")

    def _apply_fault(self, vault, fault, record):
        """Acts out a fault; True when it took the place of the answer."""
        if fault.kind == "delay":
            vault._stopping.wait(fault.seconds)
            return False
        if fault.kind == "truncate":
            return False
        if fault.kind == "drop":
            self.close_connection = True
            return True
        if fault.kind == "status":
            record.status = fault.status
            message = FAULT_ERRORS.get(fault.status, "injected fault")
            extra = [("Retry-After", str(fault.retry_after))] if fault.retry_after else []
            self._send(fault.status, {"errors": [message]}, extra)
            return True
        record.status = 200
        if fault.kind == "malformed":
            self._send_raw(200, b'{"request_id": "', [])
            return True
        head = b'{"data": {"padding": "'
        self._send_raw(200, None, [], length=fault.size)
        try:  # oversized: stream a valid JSON document of exactly fault.size bytes
            self.wfile.write(head)
            left, chunk = fault.size - len(head) - 3, b"x" * 65536
            while left > 0 and not vault._stopping.is_set():
                self.wfile.write(chunk[:left])
                left -= min(left, len(chunk))
            self.wfile.write(b'"}}')
        except OSError:
            self.close_connection = True
        return True

    def _control(self, vault, name, raw_body, query):
        try:
            if _client_token(self.headers) != vault.root_token:
                raise VaultError(403, "permission denied")
            body = json.loads(raw_body) if raw_body.strip() else {}
            status, payload = vault.control(self.command, name, body, query)
        except VaultError as exc:
            status, payload = exc.status, {"errors": exc.errors}
        except ValueError as exc:
            status, payload = 400, {"errors": [f"failed to parse JSON input: {exc}"]}
        self._send(status, payload)

    def _send(self, status, body, extra=(), truncate=False):
        data = None if status == 204 else json.dumps(body).encode()
        self._send_raw(status, data, extra, truncate=truncate)

    def _send_raw(self, status, data, extra, length=None, truncate=False):
        try:
            self.send_response(status)
            if status != 204:  # a 204 carries neither body nor length
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length or len(data or b"")))
            self.send_header("Cache-Control", "no-store")
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            if data:
                self.wfile.write(data[:len(data) // 2] if truncate else data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        if truncate:
            self.close_connection = True  # the promised length never comes: hang up

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (OSError, ssl.SSLError):
            self.close_connection = True


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # failed handshakes, resets: expected
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description="A Vault API test server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--print-url", action="store_true",
                        help="print the URL as the first line of output")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA")
    parser.add_argument("--namespace", help="answer only requests in this namespace")
    parser.add_argument("--token-ttl", type=int, default=3600, help="the AppRole's token_ttl")
    parser.add_argument("--token-max-ttl", type=int, default=0)
    parser.add_argument("--lease-ttl", type=int, default=3600, help="database role default_ttl")
    parser.add_argument("--lease-max-ttl", type=int, default=0)
    args = parser.parse_args(argv)

    server = VaultServer(port=args.port, certfile=args.tls_cert, keyfile=args.tls_key,
                         client_ca=args.client_ca, namespace=args.namespace)
    role_id, secret_id = server.add_approle("keyturn", token_ttl=args.token_ttl,
                                            token_max_ttl=args.token_max_ttl,
                                            paths=["database/", "secret/", "sys/leases/"])
    server.add_database_role("app", default_ttl=args.lease_ttl, max_ttl=args.lease_max_ttl)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        if args.print_url:
            print(server.url)
        print(json.dumps({"url": server.url, "root_token": server.root_token,
                          "approle": {"name": "keyturn", "role_id": role_id,
                                      "secret_id": secret_id},
                          "database_role": "app", "namespace": server.namespace}))
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
