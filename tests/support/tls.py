"""The one TLS setup: a private CA (trustme) and a certificate for 127.0.0.1 and localhost."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass
class TLSFiles:
    ca: trustme.CA
    ca_pem: Path  # the CA bundle a client trusts (--upstream-ca)
    cert_pem: Path  # the server's chain
    key_pem: Path  # the server's key

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_pem, self.key_pem)
        return ctx


def make_tls(directory: Path, *names: str) -> TLSFiles:
    """A CA and a server certificate for ``names`` (default: 127.0.0.1 and localhost)."""
    ca = trustme.CA()
    cert = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
    files = TLSFiles(ca, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(files.ca_pem)
    cert.private_key_and_cert_chain_pem.write_to_path(files.cert_pem)
    cert.private_key_pem.write_to_path(files.key_pem)
    return files
