"""Three RabbitMQ nodes joined into one cluster on loopback, for the cluster suite."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.servers.process import HOST, unreachable
from tests.servers.rabbitmq_node import RabbitServer


class RabbitCluster:
    """``size`` :class:`RabbitServer` nodes sharing an Erlang cookie; the others join the first.

    ``url`` lists every node's AMQP port (the adapter tries them in turn); ``leader(queue)`` names
    the node that leads a quorum queue, to SIGKILL it mid-batch.
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        cookie = uuid.uuid4().hex.upper()
        self.nodes = [RabbitServer(workdir / f"r{i}", cookie=cookie) for i in range(size)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{n.port}" for n in self.nodes)
        return f"amqp://guest:guest@{hosts}/%2F"

    def start(self) -> None:
        first, *others = self.nodes
        for node in self.nodes:
            node.start()
        for node in others:
            for step in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
                done = node.ctl(*step, timeout=120)
                if done.returncode != 0:
                    self.stop()
                    unreachable(f"RabbitMQ node {node.node} could not {' '.join(step)}: {done.stderr[-300:]}")

    def leader(self, queue: str) -> RabbitServer:
        """The node leading quorum queue ``queue``, asked of any node still running."""
        for asked in self.nodes:
            if not asked.running:
                continue
            done = asked.ctl("list_queues", "name", "leader", "--formatter", "json", "-q")
            if done.returncode != 0:
                continue
            for row in json.loads(done.stdout or "[]"):
                if row.get("name") == queue:
                    return next(n for n in self.nodes if n.node == row.get("leader"))
        raise AssertionError(f"no node reports a leader for {queue}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.running:
                node.kill()
