"""A throwaway certificate authority and the certificates it signs, made with ``openssl``.

The broker reads PEM files directly (``ssl.keystore.type=PEM``), so no Java keystore is
built; clients trust `Certificates.ca` (``ssl.ca.location``) and check the broker's name
against its subject alternative names, as in production. The local Kubernetes API server
(`devstack.controlplane`) uses the same authority for its serving and client certificates.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import LocalKafkaError

# Longer than any local run (`make kubernetes` may stay up for days); the files are deleted with
# their directory.
_DAYS = "30"
# EC P-256: key generation is instant, unlike RSA, and every TLS 1.2/1.3 stack supports it.
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True)
class Certificates:
    """Where the PEM files are."""

    ca: Path
    """The authority's certificate: the broker's truststore and the clients' ``ssl.ca.location``."""
    keystore: Path
    """The server's unencrypted PKCS#8 key followed by its certificate."""


def issue(
    directory: Path,
    hosts: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    *,
    subject: str = "/CN=kafka-broker",
) -> Certificates:
    """Make a CA and a server certificate for ``hosts`` and ``ips``, valid for server and client auth.

    Raises:
        LocalKafkaError: ``openssl`` is missing or refused.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *_KEY, "-keyout", directory / "ca.key", "-out", directory / "ca.crt",
        "-days", _DAYS, "-subj", "/CN=devstack-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    names = [f"DNS:{host}" for host in hosts] + [f"IP:{ip}" for ip in ips]
    # clientAuth too: the broker presents it to its own controller listener (mutual TLS).
    keystore = _sign(
        directory,
        "server",
        subject,
        f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth,clientAuth",
    )
    return Certificates(ca=directory / "ca.crt", keystore=keystore)


def client(directory: Path, subject: str) -> Path:
    """A client certificate for ``subject`` (e.g. ``/O=system:masters/CN=admin``) signed by the
    authority that `issue` made in ``directory``; returns its key followed by its certificate.

    Raises:
        LocalKafkaError: ``openssl`` is missing or refused.
    """
    return _sign(directory, subject.rsplit("=", 1)[-1], subject, "extendedKeyUsage=clientAuth")


def _sign(directory: Path, name: str, subject: str, extensions: str) -> Path:
    """A new key and a certificate for it signed by ``directory``'s CA; returns ``<name>.pem``
    holding both (the key first)."""
    key, request, certificate = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "crt"))
    extension_file = directory / f"{name}.ext"
    extension_file.write_text(
        f"{extensions}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    )
    _openssl("req", *_KEY, "-keyout", key, "-out", request, "-subj", subject)
    _openssl(
        "x509", "-req", "-in", request, "-CA", directory / "ca.crt", "-CAkey", directory / "ca.key",
        "-CAcreateserial", "-days", _DAYS, "-extfile", extension_file, "-out", certificate,
    )  # fmt: skip
    pem = directory / f"{name}.pem"
    pem.write_text(key.read_text() + certificate.read_text())
    pem.chmod(0o600)
    return pem


def key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A new EC P-256 key pair, e.g. to sign service-account tokens: ``<name>.key`` (PKCS#8)
    and ``<name>.pub`` in ``directory``.

    Raises:
        LocalKafkaError: ``openssl`` is missing or refused.
    """
    private, public = directory / f"{name}.key", directory / f"{name}.pub"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", private)
    private.chmod(0o600)
    _openssl("pkey", "-in", private, "-pubout", "-out", public)
    return private, public


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise LocalKafkaError(
            "openssl is not on PATH: the local secured broker's and Kubernetes' certificates are made "
            "with it. "
            "Install it (apt-get install openssl) and run again."
        )
    result = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalKafkaError(f"openssl {args[0]} failed: {result.stderr.strip()}")
