"""A throwaway redis-server from Debian's ``redis-server`` package."""

from __future__ import annotations

from pathlib import Path

from tests.certs import TlsFiles
from tests.servers.process import HOST, ServerProcess


class RedisServer(ServerProcess):
    """redis-server with no RDB snapshots; ``durable`` (the default, for restart tests) adds
    ``appendonly yes`` with ``appendfsync always``, so an acknowledged write survives a crash.

    With ``tls`` it serves TLS only on ``port`` (``rediss://``); client certs are optional
    unless ``verify_clients``. ``password`` sets ``requirepass``.
    """

    name = "redis-server"
    install_hint = "apt-get install redis-server (or set ORQ_TEST_REDIS_URL to a running Redis)"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        verify_clients: bool = False,
        password: str | None = None,
        durable: bool = True,
    ) -> None:
        super().__init__(workdir, port)
        self.tls, self.verify_clients, self.password = tls, verify_clients, password
        self.durable = durable

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        cmd = [
            "redis-server", "--bind", HOST, "--dir", str(self.workdir), "--save", "",
            "--daemonize", "no", "--protected-mode", "no",
        ]  # fmt: skip
        cmd += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
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
