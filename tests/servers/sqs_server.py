"""A throwaway SQS-compatible server: moto in server mode (``moto[server]``, a dev dependency).

A separate process rather than moto's ``ThreadedMotoServer``: the test process and the worker
processes the tests start share it, and a server thread inside the test process would compete
with the tests for its GIL. moto keeps everything in memory, so a restart empties it (broker
restart scenarios leave SQS out for that reason) and it slows down with deep queues: keep SQS test
volumes small. It answers SNS on the same port (the adapter's events use it). moto's SQS is not
thread-safe; it is made so where it starts (:mod:`tests.servers.moto_sqs`).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from tests.servers.process import HOST, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# Dummy credentials for moto only: the adapter reads the standard AWS chain, which needs some.
TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance role on a laptop
}


class SqsServer(ServerProcess):
    name = "moto-server"
    install_hint = 'pip install "moto[server]" (a dev dependency), or set ORQ_TEST_SQS_URL'
    start_timeout = 30.0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"sqs://{REGION}?endpoint_url={self.endpoint}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tests.servers.moto_sqs", "-H", HOST, "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        """Ours plus the checkout on the path, for :mod:`tests.servers.moto_sqs` (moto made
        thread-safe) run from the server's own directory."""
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path}

    def ready(self) -> bool:
        """Listening is not enough: moto answers once its services are loaded."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            self.not_installed(str(exc))
        super().start()
