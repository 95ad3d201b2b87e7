"""Throw-away TLS certificates for servers on loopback: a CA and one server certificate it signed.

Made at run time with the ``openssl`` command line (OpenSSL 3) in a directory
the caller owns (a test's temporary directory), so no key is ever committed.
The server certificate names ``127.0.0.1`` and ``localhost``, so clients check
the hostname as they would in production. Keys are EC P-256 (fast to make),
unencrypted, readable by the owner only; nothing here prints or logs a key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from devstack.processes import StartupError

VALID_DAYS = 2
OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = callqueue throw-away

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate (for clients) and the server's certificate and key (for servers)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    # The server certificate followed by its key, as mongod's --tlsCertificateKeyFile wants them.
    cert_key_file: Path

    def mongo_query(self) -> str:
        """The query a ``mongodb://`` URL needs to connect over TLS and trust this CA."""
        return f"tls=true&tlsCAFile={quote(str(self.ca_file), safe='/')}"

    def redis_query(self) -> str:
        """The query a ``rediss://`` URL needs to check the server against this CA (Celery wants ssl_cert_reqs)."""
        return f"ssl_cert_reqs=required&ssl_ca_certs={quote(str(self.ca_file), safe='/')}"


def openssl_binary() -> str:
    """Path of the ``openssl`` command (Debian's openssl package)."""
    found = shutil.which("openssl")
    if not found:
        raise StartupError("openssl not found: apt-get install openssl")
    return found


def make_certificates(directory: Path) -> TlsFiles:
    """Create a CA and a server certificate for 127.0.0.1/localhost in ``directory``, valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                     directory / "server-cert-key.pem")
    ca_key, request = directory / "ca.key", directory / "server.csr"
    _openssl("req", "-x509", "-new", *_new_key(ca_key), "-out", str(files.ca_file), "-days", str(VALID_DAYS),
             "-config", str(config), "-extensions", "ca_ext", "-subj", "/CN=callqueue throw-away CA")
    _openssl("req", "-new", *_new_key(files.key_file), "-out", str(request), "-config", str(config),
             "-subj", "/CN=localhost")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(files.ca_file), "-CAkey", str(ca_key),
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", str(files.cert_file),
             "-days", str(VALID_DAYS), "-extfile", str(config), "-extensions", "server_ext")
    _write_private(files.cert_key_file, files.cert_file.read_text() + files.key_file.read_text())
    request.unlink()
    return files


def _new_key(path: Path) -> list[str]:
    """``openssl req`` arguments that make a new unencrypted EC P-256 key at ``path``."""
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(path)]


def _openssl(*args: str) -> None:
    """Run openssl; on failure raise with its error output (which never holds a key)."""
    result = subprocess.run([openssl_binary(), *args], capture_output=True, text=True, umask=0o077)
    if result.returncode != 0:
        raise StartupError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read."""
    path.touch(mode=0o600)
    path.write_text(text)
