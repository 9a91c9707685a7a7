"""A throwaway Apache Kafka: the official server jars from Maven Central, one KRaft node.

Nothing is downloaded into the repository. :func:`ensure_kafka` asks Maven to resolve
``org.apache.kafka:kafka_2.13`` (and a log4j binding, so the server's log says why it stopped)
with its runtime dependencies into a cache outside the checkout, once per machine:
``$ORQ_KAFKA_HOME``, else ``$XDG_CACHE_HOME/orquestrador/kafka-<version>`` (``~/.cache/...``).
``python -m tests.servers`` does the same from a shell (``.ci/install`` calls it).

:class:`KafkaServer` runs one node that is broker and controller at once, on a free loopback
port, with its storage formatted under a fresh cluster id in the caller's directory::

    with KafkaServer(tmp_path / "kafka") as kafka:
        kafka.bootstrap      # "127.0.0.1:PORT", for aiokafka's bootstrap_servers
        kafka.url            # "kafka://127.0.0.1:PORT"
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from tests.certs import TlsFiles
from tests.servers.process import HOST, ServerProcess, free_port, port_open, unreachable

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"  # the log4j-core that kafka_2.13 4.1.1 itself depends on
RESOLVE_TIMEOUT = 900.0

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>orquestrador.tests</groupId>
  <artifactId>kafka-server</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J_CONFIG = """rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
"""

INSTALL_HINT = (
    "apt-get install maven default-jre-headless, then python -m tests.servers "
    "(or set ORQ_TEST_KAFKA_URL to a running Kafka)"
)


class KafkaUnavailable(RuntimeError):
    """Kafka's jars cannot be resolved here (no Java, no Maven, or Maven Central refused)."""


def kafka_home() -> Path:
    configured = os.environ.get("ORQ_KAFKA_HOME")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "orquestrador" / f"kafka-{KAFKA_VERSION}"


def ensure_kafka(home: Path | None = None) -> Path:
    """The directory of Kafka's jars, resolved by Maven on the first call on this machine."""
    home = home or kafka_home()
    libs = home / "libs"
    if (libs / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar").exists():
        return libs
    for program in ("java", "mvn"):
        if shutil.which(program) is None:
            raise KafkaUnavailable(f"{program} is not on PATH")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(POM)
    partial = home / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        "mvn", "-B", "-q", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailable(f"mvn did not resolve Kafka in {RESOLVE_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise KafkaUnavailable(f"mvn failed: {(done.stdout + done.stderr).strip()[-600:]}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)  # whole or absent: an interrupted resolve is redone
    return libs


def cluster_id() -> str:
    """A fresh KRaft cluster id: a random UUID, base64url without padding (22 characters).

    Never one starting with '-' (one in 64): the storage tool would read it as an option and
    the node would not start, as Kafka's own ``Uuid.randomUuid`` avoids too.
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not candidate.startswith("-"):
            return candidate


class KafkaServer(ServerProcess):
    """One KRaft node (``process.roles=broker,controller``) with a single-replica everything.

    ``stop()`` is a controlled shutdown (SIGTERM); data survives ``restart()``, so restart tests
    can use it like the other throwaway servers.
    """

    name = "kafka"
    install_hint = INSTALL_HINT
    start_timeout = 90.0

    def __init__(self, workdir: Path, port: int | None = None, *, tls: TlsFiles | None = None) -> None:
        super().__init__(workdir, port)
        self.tls = tls  # also an SSL listener on tls_port, its certificate signed by tls.ca
        self.tls_port = free_port() if tls is not None else None
        self.controller_port = free_port()
        self.data_dir = self.workdir / "data"
        self.properties = self.workdir / "server.properties"
        self.log4j = self.workdir / "log4j2.properties"
        self.libs: Path | None = None
        self.cluster = cluster_id()  # the nodes of one cluster share theirs
        self._log_start = 0  # where this start's lines begin in the (appended) log

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def tls_url(self) -> str:
        return f"kafkas://{HOST}:{self.tls_port}"

    def _tls_config(self) -> dict[str, str]:
        if self.tls is None:
            return {}
        keystore = self.workdir / "server-keystore.pem"  # Kafka's PEM keystore: key, then chain
        keystore.write_text(self.tls.key.read_text() + self.tls.cert.read_text())
        return {
            "ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.tls.ca),
            "ssl.endpoint.identification.algorithm": "",
        }  # fmt: skip

    def _config(self) -> str:
        ssl = f",SSL://{HOST}:{self.tls_port}" if self.tls is not None else ""
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}" + ssl,
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}" + ssl,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            **self._tls_config(),
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, main: str, *args: str) -> list[str]:
        assert self.libs is not None
        return [
            "java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j}", "-cp", f"{self.libs}/*", main, *args,
        ]  # fmt: skip

    def _format_storage(self) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        command = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster,
                             "-c", str(self.properties))  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            unreachable(f"kafka storage format failed: {(done.stdout + done.stderr).strip()[-600:]}")

    def start(self) -> None:
        if self.running:
            return
        try:
            self.libs = ensure_kafka()
        except KafkaUnavailable as exc:
            self.not_installed(str(exc))
        self.properties.write_text(self._config())
        self.log4j.write_text(LOG4J_CONFIG)
        self._format_storage()
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        super().start()

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.properties))

    def ready(self) -> bool:
        """The port opens before the node has joined its own quorum: wait for the log line too."""
        if not port_open(self.port):
            return False
        try:
            with open(self.log_file, "rb") as log:
                log.seek(self._log_start)
                return b"Kafka Server started" in log.read()
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)


def main() -> int:
    """``python -m tests.servers``: resolve the jars now (CI does, before the tests)."""
    try:
        libs = ensure_kafka()
    except KafkaUnavailable as exc:
        print(f"Kafka {KAFKA_VERSION} is unavailable: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return 1
    print(f"Kafka {KAFKA_VERSION} jars in {libs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
