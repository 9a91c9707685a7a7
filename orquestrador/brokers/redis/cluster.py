"""Redis Cluster: the client behind ``redis://h1:7000,h2:7001?cluster=true``.

redis-py's cluster client finds the nodes from any seed, sends each command to the master of its
key's slot and follows MOVED. Two things are added here: a command whose master has just died
waits (up to :data:`FAILOVER_SECONDS`) for the cluster to promote its replica instead of failing
after a few retries without a pause; and :func:`replicated`, which asks the master of a queue to
confirm that its replicas got a publish (``WAIT``) before the publish returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException

from orquestrador.errors import ConfigError
from orquestrador.settings import redact_url, seeds

log = logging.getLogger(__name__)
T = TypeVar("T")

FAILOVER_SECONDS = 20.0  # a master's death is noticed after cluster-node-timeout (15 s by default)
_DEGRADED_SECONDS = 10.0  # how long a master that lacked replicas is not waited for
_YES, _NO = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


class FailoverCluster(RedisCluster):
    """redis-py's cluster client that rides out a failover: a command that finds its node gone
    is tried again with a growing pause while the cluster elects a replica (redis-py alone
    retries at once, and gives up before the election)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await ride_out(self, lambda: super(FailoverCluster, self).execute_command(*args, **kwargs))

    async def _determine_slot(self, command: str, *args: Any) -> int:
        """XREADGROUP's slot from its own arguments: redis-py would ask a node (COMMAND GETKEYS)
        on every fetch, one round trip more, and keep asking it after it died."""
        marks = [i for i, a in enumerate(args) if a in (b"STREAMS", "STREAMS")]
        if command.upper() == "XREADGROUP" and marks:
            at = marks[-1] + 1  # keys, then as many ids, follow the last one
            keys = args[at : at + (len(args) - at) // 2]
            if keys and len({self.keyslot(k) for k in keys}) == 1:
                return self.keyslot(keys[0])
        return await super()._determine_slot(command, *args)


def cluster_option(url: str, value: str, servers: int) -> bool:
    """``?cluster=true``: a Redis Cluster (its key layout differs, so it is never guessed)."""
    if value.strip().lower() not in _YES + _NO:
        raise ConfigError(f"?cluster={value[:20]!r} in {redact_url(url)} must be true or false")
    clustered = value.strip().lower() in _YES
    if servers > 1 and not clustered:
        raise ConfigError(
            f"the Redis URL {redact_url(url)} lists {servers} servers: add ?cluster=true for a Redis "
            "Cluster (one server otherwise)"
        )
    return clustered


async def ride_out(client: RedisCluster, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, again with a growing pause while it fails for a node that is gone, until
    the cluster has promoted its replica (or :data:`FAILOVER_SECONDS` passed): for single
    commands, and for pipelines, whose own retries stop after about two seconds."""
    deadline = time.monotonic() + FAILOVER_SECONDS
    pause = 0.1
    while True:
        try:
            return await attempt()
        except RedisCluster.ERRORS_ALLOW_RETRY:
            if time.monotonic() + pause > deadline:
                raise
            # Read the slot map again (and the node redis-py asks for the keys of some commands:
            # it keeps asking a dead one, as it re-reads only on some errors).
            client._initialize = True
        await asyncio.sleep(pause)
        pause = min(1.0, pause * 2)


def cluster_client(url: str, **options: Any) -> FailoverCluster:
    """The cluster client for ``url`` (every ``host:port`` of it a seed; ``rediss`` for TLS);
    ``options`` go to each node's connections, as from a single-server URL's query."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    servers = seeds(hosts)
    nodes = []
    for seed in servers:
        where = urlsplit(f"//{seed}")
        nodes.append(ClusterNode(where.hostname or "127.0.0.1", where.port or 6379))
    first = urlunsplit(parts._replace(netloc=f"{userinfo}@{servers[0]}" if userinfo else servers[0]))
    kwargs = {**options, **parse_url(first)}
    for name in ("host", "port"):
        kwargs.pop(name, None)
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    if kwargs.get("db"):
        raise ConfigError(f"a Redis Cluster has only database 0, not /{kwargs['db']} in {redact_url(url)}")
    try:
        # Few immediate retries inside redis-py: FailoverCluster pauses between its own.
        return FailoverCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), retries=8), **kwargs)
    except RedisClusterException as exc:
        raise ConfigError(f"invalid Redis Cluster URL {redact_url(url)}: {exc}") from None


class Replication:
    """``WAIT replicas timeout`` after publishes: the write is on ``replicas`` replicas of its
    master before the publish returns, so a failover to one of them keeps it.

    A master that confirms fewer (its replica is down, or it is a replica just promoted) is
    warned about and not waited for during the next ten seconds: waiting would add the full
    timeout to every publish and could still not bring the copy back.
    """

    def __init__(self, replicas: int, timeout: float) -> None:
        self.replicas, self.timeout_ms = replicas, max(1, int(timeout * 1000))
        self._degraded: dict[str, float] = {}

    def wanted(self, node: str) -> bool:
        return self.replicas > 0 and self._degraded.get(node, 0.0) <= time.monotonic()

    def add(self, pipe: Any, node: Any) -> None:
        """Queue the WAIT behind the writes to ``node`` (a cluster node, or None on one server):
        it must follow them on the same connection, which a pipeline's batch per node is."""
        target = {"target_nodes": node} if node is not None else {}
        pipe.execute_command("WAIT", self.replicas, self.timeout_ms, **target)

    def check(self, confirmed: Any, node: str, queue: str) -> None:
        if int(confirmed) >= self.replicas:
            return
        self._degraded[node] = time.monotonic() + _DEGRADED_SECONDS
        log.warning(
            "publish to %s confirmed by %s of %d replicas within %d ms: it is on the master only "
            "(a failover now could lose it); not waiting for %s for %.0f s",
            queue, confirmed, self.replicas, self.timeout_ms, node or "the server", _DEGRADED_SECONDS,
        )  # fmt: skip
