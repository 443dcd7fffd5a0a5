"""A real OpenID Connect provider for one test, and its first refresh token without a browser.

    with OidcServer(access_token_ttl=3) as op:
        tokens = op.first_tokens()              # access_token, refresh_token, expires_in, ...
        status, body = op.refresh(tokens["refresh_token"])
        assert op.stats()["invalid_grant"] == 0

The server is oidc-provider (npm) run by tests/support/oidc/server.mjs on 127.0.0.1, on a
free port, over plain HTTP, with everything in memory. Its refresh tokens rotate on every
use, and presenting a used one again revokes the whole grant; server.mjs says exactly what
it is configured to do. The server is stopped when the `with` block ends, whether the test
passed or not, and also stops by itself when this process dies, because it watches the
pipe on its stdin.

The first tokens come from the authorization code flow with PKCE, driven over HTTP:
GET /auth with `scope=openid offline_access` and `prompt=consent`, then the redirects
through the server's interaction routes (which log in the one test account and grant
consent by themselves, see server.mjs), until the redirect to the client's redirect_uri.
Nothing listens there: the code is read from the Location header. The code is then
exchanged at the token endpoint.

Needs Node.js and the npm package installed under tests/support/oidc/node_modules, both
by scripts/setup.sh. Without them OidcServer raises OidcNotInstalled, which says so.

    python3 tests/support/oidc_fixture.py --print     # start, get tokens, print, stop
    python3 tests/support/oidc_fixture.py --serve     # the same, then wait for Ctrl-C

Standard library only.
"""

import argparse
import base64
import hashlib
import http.cookiejar
import json
import os
import secrets
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SUPPORT_DIR = os.path.dirname(os.path.abspath(__file__))
SERVER_DIR = os.path.join(SUPPORT_DIR, "oidc")
SERVER_SCRIPT = os.path.join(SERVER_DIR, "server.mjs")
PACKAGE_JSON = os.path.join(SERVER_DIR, "node_modules", "oidc-provider", "package.json")
SETUP_HINT = ("run scripts/setup.sh: it installs Node.js when missing and the npm package "
              "oidc-provider under tests/support/oidc/node_modules (scripts/oidc_setup.sh)")

START_TIMEOUT = 30  # seconds; a start normally takes well under one
STOP_TIMEOUT = 5  # seconds for each of: stdin closed, SIGTERM; then SIGKILL
HTTP_TIMEOUT = 10  # seconds for any one request to the server
MAX_REDIRECTS = 10  # /auth -> login -> /auth -> consent -> /auth -> redirect_uri is five


class OidcNotInstalled(RuntimeError):
    """Node.js or the oidc-provider package is not on this machine."""


class OidcFlowError(RuntimeError):
    """The authorization code flow did not end in a code and tokens."""


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _find_node(node=None):
    path = node or shutil.which("node")
    if not path or not os.access(path, os.X_OK):
        raise OidcNotInstalled(f"Node.js (node) was not found: {SETUP_HINT}")
    if not os.path.isfile(PACKAGE_JSON):
        raise OidcNotInstalled(f"oidc-provider is not installed ({PACKAGE_JSON} is missing): "
                               f"{SETUP_HINT}")
    return path


class _KeepEveryResponse(urllib.request.HTTPErrorProcessor):
    """Hands back 3xx and 4xx responses as they are, so redirects are followed by hand."""

    def http_response(self, request, response):
        return response

    https_response = http_response


def _read_json(response):
    raw = response.read()
    try:
        return json.loads(raw.decode("utf-8")) if raw else {}
    except ValueError:
        return {"unparsed_body": raw[:500].decode("utf-8", "replace")}


class OidcServer:
    """oidc-provider on 127.0.0.1 for the length of a `with` block."""

    def __init__(self, access_token_ttl=3, refresh_token_ttl=24 * 60 * 60, port=0,
                 node=None, verbose=False):
        self._node = node
        self._args = ["--port", str(port), "--access-token-ttl", str(access_token_ttl),
                      "--refresh-token-ttl", str(refresh_token_ttl), "--exit-with-stdin"]
        if verbose:
            self._args.append("--verbose")
        self._proc = None
        self._log = None
        self._log_kept = ""
        self.meta = None
        self._opener = urllib.request.build_opener(_KeepEveryResponse())

    # --- life cycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        node = _find_node(self._node)
        self._log = tempfile.TemporaryFile(mode="w+b", prefix="keyturn-oidc-")
        self._proc = subprocess.Popen(
            [node, SERVER_SCRIPT, *self._args], cwd=SERVER_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        try:
            self.meta = json.loads(self._first_line())
        except BaseException:
            self.stop()
            raise

    def _first_line(self):
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"oidc server did not start within {START_TIMEOUT}s; "
                                       f"its log:\n{self.log_text()}")
                if not sel.select(timeout=left):
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 4096)
                if not chunk:
                    self._proc.wait(timeout=STOP_TIMEOUT)
                    raise RuntimeError(f"oidc server exited with status {self._proc.returncode} "
                                       f"before it started; its log:\n{self.log_text()}")
                line += chunk
        return line.decode("utf-8").splitlines()[0]

    def stop(self):
        """Stops the server: closes its stdin, then SIGTERM, then SIGKILL. Safe to repeat."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for step in (proc.stdin.close, proc.terminate, proc.kill):
                if proc.poll() is not None:
                    break
                step()
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            proc.stdout.close()
            proc.stdin.close()
        if self._log is not None:
            self._log_kept = self.log_text()
            self._log.close()
            self._log = None

    def log_text(self):
        """What the server wrote to stderr so far (kept after it stopped)."""
        if self._log is None:
            return self._log_kept
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    @property
    def pid(self):
        return self.meta["pid"]

    # --- what a client needs to know

    @property
    def issuer(self):
        return self.meta["issuer"]

    @property
    def token_endpoint(self):
        return self.meta["token_endpoint"]

    @property
    def authorization_endpoint(self):
        return self.meta["authorization_endpoint"]

    @property
    def redirect_uri(self):
        return self.meta["redirect_uri"]

    @property
    def access_token_ttl(self):
        return self.meta["access_token_ttl"]

    def client(self, auth="basic"):
        """(client_id, client_secret) of the client registered for `auth`: basic or post."""
        entry = self.meta["clients"][f"client_secret_{auth}"]
        return entry["client_id"], entry["client_secret"]

    @property
    def client_id(self):
        return self.client("basic")[0]

    @property
    def client_secret(self):
        return self.client("basic")[1]

    # --- HTTP

    def _request(self, url, form=None, headers=None, opener=None):
        data = urllib.parse.urlencode(form).encode("ascii") if form is not None else None
        req = urllib.request.Request(url, data=data, headers=headers or {})
        return (opener or self._opener).open(req, timeout=HTTP_TIMEOUT)

    def token_request(self, form, auth="basic", client=None):
        """POSTs `form` to the token endpoint as the client for `auth` (basic or post), or as
        `client` = (id, secret) using that method. Returns (HTTP status, JSON body)."""
        client_id, client_secret = client or self.client(auth)
        form = dict(form)
        headers = {"Accept": "application/json"}
        if auth == "basic":
            # RFC 6749 §2.3.1: both parts are form-encoded before they are joined.
            pair = (urllib.parse.quote(client_id, safe="") + ":"
                    + urllib.parse.quote(client_secret, safe=""))
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif auth == "post":
            form.update(client_id=client_id, client_secret=client_secret)
        else:
            raise ValueError(f"auth must be basic or post, not {auth!r}")
        with self._request(self.token_endpoint, form, headers) as resp:
            return resp.status, _read_json(resp)

    def refresh(self, refresh_token, auth="basic"):
        """One refresh_token grant. Returns (HTTP status, JSON body)."""
        return self.token_request({"grant_type": "refresh_token",
                                   "refresh_token": refresh_token}, auth)

    def introspect(self, token, auth="basic"):
        """RFC 7662 introspection of `token`; returns the JSON body (`active` says it all)."""
        client_id, client_secret = self.client(auth)
        form = {"token": token}
        headers = {}
        if auth == "basic":
            pair = f"{client_id}:{client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form.update(client_id=client_id, client_secret=client_secret)
        with self._request(self.meta["introspection_endpoint"], form, headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"introspection: HTTP {resp.status}: {_read_json(resp)}")
            return _read_json(resp)

    def stats(self):
        """The server's counters: refresh_grants, invalid_grant, revoked_grants, ..."""
        with self._request(self.meta["stats_endpoint"]) as resp:
            return _read_json(resp)

    def reset_stats(self):
        with self._request(f"{self.issuer}/test/reset", form={}) as resp:
            return _read_json(resp)

    # --- the first tokens

    def first_tokens(self, auth="basic", scope="openid offline_access"):
        """Runs the authorization code flow with PKCE for the client for `auth` and returns
        the token endpoint's JSON: access_token, refresh_token, expires_in, id_token, ..."""
        client_id, _ = self.client(auth)
        verifier = _b64url(secrets.token_bytes(32))
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
        state = _b64url(secrets.token_bytes(16))
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "prompt": "consent",
            "state": state,
            "nonce": _b64url(secrets.token_bytes(16)),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        })
        code = self._follow_to_redirect_uri(f"{self.authorization_endpoint}?{query}", state)

        status, body = self.token_request({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
        }, auth)
        if status != 200 or "access_token" not in body:
            raise OidcFlowError(f"code exchange: HTTP {status}: {body}")
        return body

    def _follow_to_redirect_uri(self, url, state):
        # A fresh cookie jar per flow: the interaction and session cookies of one flow
        # must not leak into the next.
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                             _KeepEveryResponse())
        for _ in range(MAX_REDIRECTS):
            with self._request(url, opener=opener) as resp:
                status, location = resp.status, resp.headers.get("Location")
                body = resp.read(500).decode("utf-8", "replace")
            if status not in (301, 302, 303, 307) or not location:
                raise OidcFlowError(f"GET {url.split('?')[0]}: HTTP {status} without a "
                                    f"redirect; body starts: {body!r}")
            url = urllib.parse.urljoin(url, location)
            if url.startswith(self.redirect_uri + "?") or url.startswith(self.redirect_uri + "#"):
                return self._code_from(url, state)
        raise OidcFlowError(f"no redirect to {self.redirect_uri} after {MAX_REDIRECTS} hops")

    def _code_from(self, url, state):
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        if "error" in params:
            raise OidcFlowError(f"authorization failed: {params['error']}: "
                                f"{params.get('error_description', '')}")
        if params.get("state") != state:
            raise OidcFlowError("authorization response: state does not match the request")
        if params.get("iss") not in (None, self.issuer):
            raise OidcFlowError(f"authorization response from issuer {params.get('iss')}")
        if not params.get("code"):
            raise OidcFlowError("authorization response has no code")
        return params["code"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--print", action="store_true",
                      help="start the server, get first tokens, print them as JSON, stop")
    what.add_argument("--serve", action="store_true",
                      help="the same, then keep the server running until Ctrl-C")
    parser.add_argument("--access-token-ttl", type=int, default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", choices=("basic", "post"), default="basic")
    parser.add_argument("--verbose", action="store_true", help="log each token request")
    args = parser.parse_args(argv)

    try:
        with OidcServer(access_token_ttl=args.access_token_ttl, port=args.port,
                        verbose=args.verbose) as op:
            tokens = op.first_tokens(auth=args.auth)
            print(json.dumps({"server": op.meta, "tokens": tokens}, indent=2), flush=True)
            if args.serve:
                print("serving; Ctrl-C stops", file=sys.stderr, flush=True)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    except OidcNotInstalled as exc:
        print(f"oidc_fixture: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
