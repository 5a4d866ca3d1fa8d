"""Finding a Java 17+ runtime for the broker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from devstack.errors import LocalKafkaError

MINIMUM = 17


def find() -> str:
    """Path of a ``java`` of version 17 or newer: ``$JAVA_HOME/bin/java``, else ``PATH``.

    Raises:
        LocalKafkaError: no Java, or one older than 17.
    """
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise LocalKafkaError(
            "Java is not installed (no JAVA_HOME, no java on PATH); Kafka 4 needs Java 17+. "
            "Install it (apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', output)
    if match is None or int(match.group(1)) < MINIMUM:
        raise LocalKafkaError(
            f"{java} is not Java {MINIMUM}+ ({output.strip().splitlines()[:1]}); "
            "Kafka 4 brokers need Java 17 or newer: set JAVA_HOME to one."
        )
    return java
