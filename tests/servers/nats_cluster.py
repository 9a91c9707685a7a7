"""A three-node JetStream cluster on loopback, for the cluster suite (``pytest -m cluster``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats

from tests.servers.nats_server import NatsServer
from tests.servers.process import HOST, free_port, unreachable

CLUSTER_NAME = "orq"


class NatsClusterNode(NatsServer):
    """One server of a :class:`NatsCluster`: JetStream with its own store, routes to the others."""

    def __init__(self, workdir: Path, index: int, route_ports: list[int]) -> None:
        super().__init__(workdir)
        self.index, self.route_ports = index, route_ports
        self.server_name = f"n{index}"

    def command(self) -> list[str]:
        own = self.route_ports[self.index]
        routes = ",".join(f"nats://{HOST}:{p}" for i, p in enumerate(self.route_ports) if i != self.index)
        return [*super().command(), "-n", self.server_name, "--cluster_name", CLUSTER_NAME,
                "--cluster", f"nats://{HOST}:{own}", "--routes", routes]  # fmt: skip


class NatsCluster:
    """``size`` nats-servers joined into one JetStream cluster; ``url`` lists every node.

    ``node(name)`` finds the server a stream's leader runs on, to SIGKILL it mid-batch.
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        routes = [free_port() for _ in range(size)]
        self.nodes = [NatsClusterNode(workdir / f"n{i}", i, routes) for i in range(size)]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.start()
        asyncio.run(self._wait_for_meta_leader(timeout))

    async def _wait_for_meta_leader(self, timeout: float) -> None:
        """Until the cluster has a JetStream meta leader and every peer (an R3 stream can be placed)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                nc = await nats.connect(self.nodes[0].url, connect_timeout=2)
                try:
                    # Every peer has joined when a three-replica stream can be placed.
                    js = nc.jetstream()
                    probe = "ORQ_CLUSTER_PROBE"
                    await js.add_stream(name=probe, subjects=["orq.cluster.probe"], num_replicas=3)
                    await js.delete_stream(probe)
                    return
                finally:
                    await nc.close()
            except Exception as exc:
                last = exc
                await asyncio.sleep(0.5)
        self.stop()
        unreachable(f"the NATS cluster elected no JetStream leader in {timeout:.0f} s ({last!r})")

    def node(self, server_name: str) -> NatsClusterNode:
        return next(n for n in self.nodes if n.server_name == server_name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
