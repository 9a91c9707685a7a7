"""A throwaway RabbitMQ node from Debian's ``rabbitmq-server`` package, beside any other node of
the machine: its own node name, ports, data, cookie and config."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.certs import TlsFiles
from tests.servers.process import HOST, ServerProcess, free_port, log_tail, port_open, unreachable

RABBIT_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


class RabbitServer(ServerProcess):
    """A second RabbitMQ node ``orq-<uuid>@localhost`` with its own ports, data and cookie.

    ``port`` is AMQP (guest/guest on loopback); with ``tls`` a TLS listener on ``tls_port``
    is added (``amqps://``). Starting takes several seconds: prefer the session fixture
    ``rabbit_server``. ``stop()`` shuts the node down with ``rabbitmqctl stop``; data
    (durable queues, persistent messages) survives ``restart()``.
    """

    name = "rabbitmq-server"
    install_hint = "apt-get install rabbitmq-server (or set ORQ_TEST_RABBITMQ_URL to a running RabbitMQ)"
    start_timeout = 90.0

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        cookie: str | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.node = f"orq-{uuid.uuid4().hex[:10]}@localhost"
        self.cookie = cookie or uuid.uuid4().hex.upper()  # nodes of one cluster share theirs
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
            cookie.write_text(self.cookie)
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

    def env(self) -> dict[str, str]:
        return self._env()

    def start(self) -> None:
        if not (RABBIT_SCRIPTS / "rabbitmq-server").exists():
            self.not_installed(f"no {RABBIT_SCRIPTS / 'rabbitmq-server'}")
        super().start()

    def wait_ready(self) -> None:
        """``rabbitmqctl await_startup``, retried: it fails at once until the node is known to epmd."""
        assert self.proc is not None
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
            node_log = self.workdir / "log" / f"{self.node}.log"
            unreachable(
                f"throwaway RabbitMQ node did not start ({detail}); {log_tail(self.log_file)}\n"
                f"{log_tail(node_log)}"
            )

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
