"""A throwaway certificate authority and the broker's certificate, made with ``openssl``.

The broker reads PEM files directly (``ssl.keystore.type=PEM``), so no Java keystore is
built; clients trust `Certificates.ca` (``ssl.ca.location``) and check the broker's name
against its subject alternative names, as in production.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import LocalKafkaError

# A day is enough for a test run; the files are deleted with the cluster's directory.
_DAYS = "1"
# EC P-256: key generation is instant, unlike RSA, and every TLS 1.2/1.3 stack supports it.
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


@dataclass(frozen=True)
class Certificates:
    """Where the PEM files are."""

    ca: Path
    """The authority's certificate: the broker's truststore and the clients' ``ssl.ca.location``."""
    keystore: Path
    """The broker's unencrypted PKCS#8 key followed by its certificate."""


def issue(
    directory: Path, hosts: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)
) -> Certificates:
    """Make a CA and a broker certificate for ``hosts`` and ``ips``, valid for server and client auth.

    Raises:
        LocalKafkaError: ``openssl`` is missing or refused.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, request, certificate = directory / "broker.key", directory / "broker.csr", directory / "broker.crt"
    extensions = directory / "broker.ext"
    names = [f"DNS:{host}" for host in hosts] + [f"IP:{ip}" for ip in ips]
    extensions.write_text(
        f"subjectAltName={','.join(names)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        # clientAuth too: the broker presents it to its own controller listener (mutual TLS).
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "req", "-x509", *_KEY, "-keyout", ca_key, "-out", ca, "-days", _DAYS,
        "-subj", "/CN=devstack-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", *_KEY, "-keyout", key, "-out", request, "-subj", "/CN=kafka-broker")
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-days", _DAYS, "-extfile", extensions, "-out", certificate,
    )  # fmt: skip
    keystore = directory / "broker.pem"
    keystore.write_text(key.read_text() + certificate.read_text())
    keystore.chmod(0o600)
    return Certificates(ca=ca, keystore=keystore)


def _openssl(*args: str | Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise LocalKafkaError(
            "openssl is not on PATH: the secured broker's certificates are made with it. "
            "Install it (apt-get install openssl) and run again."
        )
    result = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalKafkaError(f"openssl {args[0]} failed: {result.stderr.strip()}")
