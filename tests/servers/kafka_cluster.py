"""Three KRaft nodes (each broker and controller) joined into one Kafka cluster on loopback."""

from __future__ import annotations

from pathlib import Path

from tests.servers.kafka_node import KafkaServer, cluster_id
from tests.servers.process import HOST, free_port


class KafkaClusterNode(KafkaServer):
    """Node ``node_id`` of a :class:`KafkaCluster`: its own ports and log, the cluster's id and
    controller quorum, and topics the cluster keeps three copies of (two in sync to write)."""

    def __init__(self, workdir: Path, node_id: int, voters: str, cluster: str) -> None:
        super().__init__(workdir)
        self.node_id, self.voters, self.cluster = node_id, voters, cluster
        self.launching = False

    def _config(self) -> str:
        replicated = {
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
        }
        lines = [line for line in super()._config().splitlines() if line.split("=", 1)[0] not in replicated]
        return "".join(f"{line}\n" for line in lines) + "".join(f"{k}={v}\n" for k, v in replicated.items())

    def wait_ready(self) -> None:
        if not self.launching:  # a node alone cannot finish starting: the cluster waits for all
            super().wait_ready()


class KafkaCluster:
    """``size`` KRaft nodes; ``url`` lists every node; ``node(id)`` finds a partition's leader."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        controllers = [free_port() for _ in range(size)]
        voters = ",".join(f"{i + 1}@{HOST}:{port}" for i, port in enumerate(controllers))
        shared = cluster_id()
        self.nodes = [KafkaClusterNode(workdir / f"k{i + 1}", i + 1, voters, shared) for i in range(size)]
        for node, port in zip(self.nodes, controllers, strict=True):
            node.controller_port = port

    @property
    def url(self) -> str:
        return "kafka://" + ",".join(node.bootstrap for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.launching = True
            node.start()
        for node in self.nodes:
            node.launching = False
            node.wait_ready()

    def node(self, node_id: int) -> KafkaClusterNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
