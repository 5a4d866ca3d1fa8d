"""The broker's jars: resolved with Maven from ``pom.xml`` into a cache outside the repository.

The cache directory is named after a hash of the pom, so changing the Kafka version
resolves a new set. It is filled in a scratch directory and renamed into place only
when complete, so an interrupted download never leaves a half-filled cache behind;
a cache that fails its check (a truncated jar) is thrown away and resolved again.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from devstack.errors import LocalKafkaError

POM = Path(__file__).with_name("pom.xml")
# Written last: its presence means the directory holds a complete, checked set.
_COMPLETE = ".complete"


def cache_root() -> Path:
    """Where resolved jar sets live: ``$LOCAL_KAFKA_CACHE`` or ``~/.cache/kafka-rpc-gateway``."""
    configured = os.environ.get("LOCAL_KAFKA_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "kafka-rpc-gateway"


def kafka_version() -> str:
    """The Kafka version pinned in ``pom.xml``."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if match is None:
        raise LocalKafkaError(f"{POM} does not pin <kafka.version>")
    return match.group(1)


def broker_classpath() -> str:
    """A Java classpath with the broker and its logging backend, resolving it if needed.

    Raises:
        LocalKafkaError: Maven is missing or cannot resolve the jars.
    """
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    libs = cache_root() / f"kafka-{kafka_version()}-{digest}"
    if not _is_complete(libs):
        shutil.rmtree(libs, ignore_errors=True)
        _resolve_into(libs)
    return str(libs / "*")


def _is_complete(libs: Path) -> bool:
    if not (libs / _COMPLETE).exists():
        return False
    jars = list(libs.glob("*.jar"))
    return bool(jars) and all(zipfile.is_zipfile(jar) for jar in jars)


def _resolve_into(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            "Maven (mvn) is not on PATH: it resolves the Kafka broker jars. "
            "Install it (apt-get install maven) and run again."
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{libs.name}-", dir=libs.parent))
    try:
        for _attempt in range(2):
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(POM),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={scratch}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                raise LocalKafkaError(
                    f"Maven could not resolve Kafka {kafka_version()} from {POM} "
                    f"(is Maven Central reachable?):\n{tail}"
                )
            broken = [jar for jar in scratch.glob("*.jar") if not zipfile.is_zipfile(jar)]
            if not broken:
                break
            # A truncated jar in Maven's own repository is copied again and again:
            # drop it there so the second attempt downloads it afresh.
            for jar in broken:
                _forget_in_local_repository(jar.name)
                jar.unlink()
        else:
            raise LocalKafkaError(f"Maven keeps producing broken jars: {[j.name for j in broken]}")
        (scratch / _COMPLETE).write_text(kafka_version())
        try:
            scratch.rename(libs)
        except OSError:
            # Another run resolved the same set at the same time; theirs is as good.
            if not _is_complete(libs):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _forget_in_local_repository(jar_name: str) -> None:
    repository = Path.home() / ".m2" / "repository"
    for candidate in repository.rglob(jar_name):
        shutil.rmtree(candidate.parent, ignore_errors=True)
