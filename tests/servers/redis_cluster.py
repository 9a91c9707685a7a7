"""A Redis Cluster of three masters with one replica each on loopback, for the cluster suite."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.servers.process import HOST, free_port, log_tail, unreachable
from tests.servers.redis_server import RedisServer

NODE_TIMEOUT_MS = 2000  # a dead master is replaced by its replica within a few seconds


class RedisClusterNode(RedisServer):
    """One redis-server in cluster mode: its own nodes.conf, append-only file, fast failover."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, durable=True)
        self.bus_port = free_port()  # not port + 10000, which may be past 65535

    def command(self) -> list[str]:
        return [*super().command(), "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.bus_port), "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--repl-diskless-sync-delay", "0"]  # fmt: skip


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, joined by ``redis-cli --cluster create``.

    ``url`` lists every node (``redis://h:p1,h:p2,...?cluster=true``); ``master_of(key)`` finds the
    node serving a key's slot, to SIGKILL it mid-batch.
    """

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1) -> None:
        self.replicas = replicas
        self.nodes = [RedisClusterNode(workdir / f"r{i}") for i in range(masters * (1 + replicas))]

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes) + "?cluster=true"

    def start(self, timeout: float = 60.0) -> None:
        try:
            for node in self.nodes:
                node.start()
        except BaseException:  # one did not come up (skip or fail): stop the others
            self.stop()
            raise
        create = ["redis-cli", "--cluster", "create", *(f"{HOST}:{n.port}" for n in self.nodes),
                  "--cluster-replicas", str(self.replicas), "--cluster-yes"]  # fmt: skip
        try:
            done = subprocess.run(create, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            unreachable(
                f"redis-cli --cluster create did not finish in {timeout:.0f} s: {exc.stdout!r}"[-2000:]
            )
        if done.returncode != 0:
            self.stop()
            unreachable(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok``, every replica is in sync, and clients
        are shown every replica: ``CLUSTER SLOTS`` lists a replica only once its master has heard
        its replication offset, seconds after it is in sync, and a client that reads the slots
        before then cannot find the replica of a key."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.running]
            if all(self._healthy(n) for n in live) and self._replicas_listed(live):
                return
            time.sleep(0.2)
        tails = "\n".join(log_tail(n.log_file, 10) for n in self.nodes)
        self.stop()
        unreachable(f"the Redis cluster did not become healthy in {timeout:.0f} s; {tails}")

    @staticmethod
    def _healthy(node: RedisClusterNode) -> bool:
        try:
            with redis.Redis(HOST, node.port, socket_timeout=2) as client:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    return False
                info = client.info("replication")
                return info["role"] == "master" or info.get("master_link_status") == "up"
        except redis.RedisError:
            return False

    @staticmethod
    def _replicas_listed(live: list[RedisClusterNode]) -> bool:
        try:
            with redis.Redis(HOST, live[0].port, socket_timeout=2) as client:
                listed = sum(len(row) - 3 for row in client.execute_command("CLUSTER SLOTS"))
            replicas = 0
            for node in live:
                with redis.Redis(HOST, node.port, socket_timeout=2) as client:
                    replicas += client.info("replication")["role"] == "slave"
        except redis.RedisError:
            return False
        return listed >= replicas

    def master_of(self, key: str) -> RedisClusterNode:
        """The live node that serves ``key``'s slot right now."""
        live = next(n for n in self.nodes if n.running)
        with redis.Redis(HOST, live.port, socket_timeout=2) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
