"""Throwaway certificates for TLS tests, made with the `openssl` command line.

    certs = make_test_ca(tmpdir)
    server = VaultServer(certfile=certs.server_cert, keyfile=certs.server_key)
    context = ssl.create_default_context(cafile=certs.ca_cert)

`make_test_ca(dir)` writes, into `dir`:

- a CA (`ca.pem`, `ca.key`) that tests trust;
- a server certificate for `localhost` and `127.0.0.1` (both as subject alternative names),
  signed by that CA;
- a client certificate (CN `keyturn-test-client`, clientAuth), signed by that CA, for
  mutual TLS;
- a certificate for the WRONG name (`wrong.invalid`), signed by the same CA: a client that
  checks host names must refuse it although the chain is trusted;
- a server certificate for the right names signed by ANOTHER CA that nobody trusts
  (`rogue.pem`): a client must refuse it although the names match.

Keys are P-256 (quick to make); certificates are valid for 30 days from now. Needs the
`openssl` program (Debian package `openssl`, listed in scripts/setup.sh).
"""

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

VALID_DAYS = "30"
OPENSSL_TIMEOUT = 30  # seconds per openssl call; each takes milliseconds


@dataclass(frozen=True)
class TestCA:
    """Paths of the files `make_test_ca` wrote (PEM)."""

    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    wrong_name_cert: str
    wrong_name_key: str
    rogue_ca_cert: str
    rogue_cert: str
    rogue_key: str


def _openssl(*args, cwd):
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl program is missing: install it with scripts/setup.sh")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, timeout=OPENSSL_TIMEOUT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _new_key_args(key):
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key]


def _make_ca(directory, name, common_name):
    cert, key = f"{name}.pem", f"{name}.key"
    _openssl("req", "-x509", *_new_key_args(key), "-out", cert, "-days", VALID_DAYS,
             "-subj", f"/CN={common_name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return cert, key


def _make_leaf(directory, name, common_name, extensions, ca):
    """A key and a certificate signed by `ca` (a (cert, key) pair of file names)."""
    cert, key, csr, ext = f"{name}.pem", f"{name}.key", f"{name}.csr", f"{name}.ext"
    with open(os.path.join(directory, ext), "w", encoding="ascii") as f:
        f.write("basicConstraints=critical,CA:FALSE\n")
        f.write("keyUsage=critical,digitalSignature,keyEncipherment\n")
        f.write(extensions)
    _openssl("req", *_new_key_args(key), "-out", csr, "-subj", f"/CN={common_name}",
             cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
             "-set_serial", "0x" + secrets.token_hex(8), "-days", VALID_DAYS,
             "-extfile", ext, "-out", cert, cwd=directory)
    return cert, key


def make_test_ca(directory):
    """Writes a test CA and its certificates into `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    server_ext = ("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                  "extendedKeyUsage=serverAuth\n")
    ca = _make_ca(directory, "ca", "keyturn test CA")
    server = _make_leaf(directory, "server", "localhost", server_ext, ca)
    client = _make_leaf(directory, "client", "keyturn-test-client",
                        "extendedKeyUsage=clientAuth\n", ca)
    wrong = _make_leaf(directory, "wrong-name", "wrong.invalid",
                       "subjectAltName=DNS:wrong.invalid\nextendedKeyUsage=serverAuth\n", ca)
    rogue_ca = _make_ca(directory, "rogue-ca", "keyturn untrusted CA")
    rogue = _make_leaf(directory, "rogue", "localhost", server_ext, rogue_ca)

    def path(name):
        return os.path.join(directory, name)

    return TestCA(ca_cert=path(ca[0]), ca_key=path(ca[1]),
                  server_cert=path(server[0]), server_key=path(server[1]),
                  client_cert=path(client[0]), client_key=path(client[1]),
                  wrong_name_cert=path(wrong[0]), wrong_name_key=path(wrong[1]),
                  rogue_ca_cert=path(rogue_ca[0]),
                  rogue_cert=path(rogue[0]), rogue_key=path(rogue[1]))
