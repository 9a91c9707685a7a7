"""Throwaway broker servers for tests that restart, kill or reconfigure a broker.

The shared servers of this machine (NATS 4222, Redis 6379, RabbitMQ ``rabbit@localhost`` on
5672) are never touched: each server here runs on free loopback ports with its data in a
directory of the caller's choosing (a ``tmp_path``), and keeps its ports across restarts so
clients can reconnect. A server that cannot start calls :func:`tests.conftest.unreachable`
(a skip on a laptop, a failure under ``CI=true``).

Usage::

    from tests.servers import NatsServer, RedisServer, free_port

    server = NatsServer(tmp_path / "nats")      # options: tls=TlsFiles, user/password, token
    server.start()
    url = server.url                             # nats://127.0.0.1:PORT (tls:// with tls=...)
    server.restart()                             # stop (SIGTERM) + start, same port and data
    server.kill()                                # SIGKILL, then start() again if you like
    server.stop()

    redis = RedisServer(tmp_path / "redis")      # appendonly yes, appendfsync always
    rabbit = RabbitServer(tmp_path / "rabbit")   # a second RabbitMQ node (slow: ~10 s to start)

Each class is also a context manager (start on enter, stop on exit). Session fixtures, registered
in tests/conftest.py so that every module shares one: ``tls_files`` (a CA, server and client
certs, see :mod:`tests.certs`) and ``rabbit_server`` (one throwaway RabbitMQ node with a TLS
listener; tests must not stop it, only ``restart()`` it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import TlsFiles, make_tls_files

__all__ = [
    "NatsServer",
    "RabbitServer",
    "RedisServer",
    "TlsFiles",
    "free_port",
    "port_open",
    "rabbit_server",
    "tls_files",
]

HOST = "127.0.0.1"


def unreachable(what: str) -> None:
    """Skip, or fail under CI=true (imported late: tests/conftest.py imports this module)."""
    from tests.conftest import unreachable as skip_or_fail

    skip_or_fail(what)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


class _Process:
    """A server process started by this test run, waited for on its port."""

    name = "server"
    start_timeout = 20.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start (again) on the same port and data directory; waits until the port accepts."""
        if self.running:
            return
        with open(self.log_file, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.workdir, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                unreachable(f"throwaway {self.name} ({exc})")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                unreachable(f"throwaway {self.name} (exited with {code}; see {self.log_file})")
            if port_open(self.port):
                return
            time.sleep(0.05)
        self.kill()
        unreachable(f"throwaway {self.name} (not listening on {self.port}; see {self.log_file})")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """A clean shutdown (SIGTERM); SIGKILL if it takes longer than ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """Crash it (SIGKILL), as a power cut or the OOM killer would."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsServer(_Process):
    """nats-server with JetStream file storage in ``workdir/jetstream``.

    ``tls``: serve TLS only (clients use ``tls://``); ``verify_clients`` also requires a client
    cert signed by ``tls.ca``. ``user``/``password`` or ``token``: require that auth.
    """

    name = "nats-server"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        verify_clients: bool = False,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.tls, self.verify_clients = tls, verify_clients
        self.user, self.password, self.token = user, password, token

    @property
    def url(self) -> str:
        """The URL without credentials (add them yourself to test auth)."""
        return f"{'tls' if self.tls else 'nats'}://{HOST}:{self.port}"

    def command(self) -> list[str]:
        from orquestrador.brokers.embedded import find_binary

        try:
            binary = find_binary()
        except Exception as exc:
            unreachable(f"nats-server binary ({exc})")
        cmd = [binary, "-a", HOST, "-p", str(self.port), "-js", "-sd", str(self.workdir / "jetstream")]
        if self.tls is not None:
            cmd += ["--tlscert", str(self.tls.cert), "--tlskey", str(self.tls.key)]
            if self.verify_clients:
                cmd += ["--tlsverify", "--tlscacert", str(self.tls.ca)]
            else:
                cmd += ["--tls"]
        if self.user is not None:
            cmd += ["--user", self.user, "--pass", self.password or ""]
        if self.token is not None:
            cmd += ["--auth", self.token]
        return cmd


class RedisServer(_Process):
    """redis-server with ``appendonly yes``, ``appendfsync always`` and no RDB snapshots.

    With ``tls`` it serves TLS only on ``port`` (``rediss://``); client certs are optional
    unless ``verify_clients``. ``password`` sets ``requirepass``.
    """

    name = "redis-server"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        verify_clients: bool = False,
        password: str | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.tls, self.verify_clients, self.password = tls, verify_clients, password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        cmd = [
            "redis-server", "--bind", HOST, "--dir", str(self.workdir), "--appendonly", "yes",
            "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "no",
        ]  # fmt: skip
        if self.tls is None:
            cmd += ["--port", str(self.port)]
        else:
            cmd += [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "yes" if self.verify_clients else "optional",
            ]  # fmt: skip
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd


RABBIT_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


class RabbitServer(_Process):
    """A second RabbitMQ node ``orq-<uuid>@localhost`` with its own ports, data and cookie.

    ``port`` is AMQP (guest/guest on loopback); with ``tls`` a TLS listener on ``tls_port``
    is added (``amqps://``). Starting takes several seconds: prefer the session fixture
    ``rabbit_server``. ``stop()`` shuts the node down with ``rabbitmqctl stop``; data
    (durable queues, persistent messages) survives ``restart()``.
    """

    name = "rabbitmq-server"
    start_timeout = 90.0

    def __init__(self, workdir: Path, port: int | None = None, *, tls: TlsFiles | None = None) -> None:
        super().__init__(workdir, port)
        self.node = f"orq-{uuid.uuid4().hex[:10]}@localhost"
        self.dist_port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls is not None else None
        self._home = self.workdir / "home"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{HOST}:{self.port}/%2F"

    @property
    def tls_url(self) -> str:
        """``amqps://`` on the TLS listener (only with ``tls``)."""
        return f"amqps://guest:guest@{HOST}:{self.tls_port}/%2F"

    def _env(self) -> dict[str, str]:
        base = self.workdir
        self._home.mkdir(exist_ok=True)
        cookie = self._home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(uuid.uuid4().hex.upper())
            cookie.chmod(0o400)
        (base / "enabled_plugins").write_text("[].\n")  # no management listener on a shared port
        (base / "rabbitmq-env.conf").write_text("")  # not the shared node's env file
        conf = [f"listeners.tcp.default = {HOST}:{self.port}", "loopback_users = none"]
        if self.tls is not None:
            conf += [
                f"listeners.ssl.default = {HOST}:{self.tls_port}",
                f"ssl_options.cacertfile = {self.tls.ca}",
                f"ssl_options.certfile = {self.tls.cert}",
                f"ssl_options.keyfile = {self.tls.key}",
                "ssl_options.verify = verify_peer",
                "ssl_options.fail_if_no_peer_cert = false",
            ]
        (base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self._home),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(base / "rabbit.pid"),
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def command(self) -> list[str]:
        return [str(RABBIT_SCRIPTS / "rabbitmq-server")]

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <this node> ...`` (never the shared node)."""
        return subprocess.run(
            [str(RABBIT_SCRIPTS / "rabbitmqctl"), "-n", self.node, *args],
            env=self._env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def start(self) -> None:
        if self.running:
            return
        if not (RABBIT_SCRIPTS / "rabbitmq-server").exists():
            unreachable("rabbitmq-server (not installed)")
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        # await_startup fails at once while the node is not yet registered with epmd: retry.
        deadline = time.monotonic() + self.start_timeout
        done: subprocess.CompletedProcess[str] | None = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                done = self.ctl("await_startup", "--timeout", "30", timeout=60)
            except subprocess.TimeoutExpired:
                continue
            if done.returncode == 0:
                break
            time.sleep(0.5)
        if done is None or done.returncode != 0 or not port_open(self.port):
            detail = (done.stderr or done.stdout).strip()[-300:] if done is not None else "timed out"
            self.kill()
            unreachable(f"throwaway RabbitMQ node ({detail}; see {self.log_file})")

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ctl("stop", timeout=timeout)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole node (the Erlang VM and its helpers run in the process group)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        self.proc = None


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA with a server cert for 127.0.0.1/localhost and a client cert."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def rabbit_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[RabbitServer]:
    """One throwaway RabbitMQ node for the session (AMQP on ``url``, TLS on ``tls_url``)."""
    server = RabbitServer(tmp_path_factory.mktemp("rabbit"), tls=tls_files)
    server.start()
    try:
        yield server
    finally:
        server.stop()
