"""Who gets which partition: sticky, and never moving a partition with jobs in flight.

Kafka's classic consumer groups rebalance eagerly: every member gives up every partition and the
group's leader hands them out again. Moving a partition whose records are still running would
redeliver them to the new owner while the old one works on them, so each member tells the leader
(in its join metadata) the partitions it owns and which of them are busy; the leader keeps every
partition with its owner, moves only idle ones to even out the counts, and gives the rest
(partitions of members that left, new topics) to the members with the fewest.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

Owned = Callable[[], tuple[list[tuple[str, int]], list[tuple[str, int]]]]


class BusyAwareAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """One instance per consumer: ``owned()`` says what it holds now (all, busy)."""

    name = "orq-busy-aware"
    version = 0

    def __init__(self, owned: Owned) -> None:
        self._owned = owned

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        owned, busy = self._owned()
        data = json.dumps({"owned": owned, "busy": busy}).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), data)

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        claims = {member: _claims(meta.user_data) for member, meta in members.items()}
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        result: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in members}
        for topic in topics:
            partitions = sorted(cluster.partitions_for_topic(topic) or ())
            takers = sorted(m for m, meta in members.items() if topic in meta.subscription)
            if not partitions or not takers:
                continue
            for member, got in _assign_topic(topic, partitions, takers, claims).items():
                result[member][topic] = got
        return {
            member: ConsumerProtocolMemberAssignment(self.version, sorted(result[member].items()), b"")
            for member in members
        }


def _claims(user_data: Any) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    try:
        data = json.loads(bytes(user_data or b"{}"))
        owned = {(str(t), int(p)) for t, p in data.get("owned", [])}
        busy = {(str(t), int(p)) for t, p in data.get("busy", [])}
    except (ValueError, TypeError, AttributeError):
        return set(), set()
    return owned, busy


def _assign_topic(
    topic: str,
    partitions: list[int],
    takers: list[str],
    claims: Mapping[str, tuple[set[tuple[str, int]], set[tuple[str, int]]]],
) -> dict[str, list[int]]:
    quota = math.ceil(len(partitions) / len(takers))
    owner: dict[int, str] = {}
    busy: set[int] = set()
    for member in takers:  # busy claims first: they never move
        for t, p in claims[member][1]:
            if t == topic and p in partitions and p not in owner:
                owner[p] = member
                busy.add(p)
    for member in takers:
        for t, p in sorted(claims[member][0]):
            if t == topic and p in partitions and p not in owner:
                owner[p] = member
    held: dict[str, list[int]] = {m: sorted(p for p, o in owner.items() if o == m) for m in takers}
    for member in takers:  # idle partitions over the quota are handed on
        extra = len(held[member]) - quota
        for p in [p for p in reversed(held[member]) if p not in busy][: max(0, extra)]:
            held[member].remove(p)
            del owner[p]
    for p in partitions:
        if p not in owner:
            member = min(takers, key=lambda m: (len(held[m]), m))
            owner[p] = member
            held[member].append(p)
    return {m: sorted(ps) for m, ps in held.items()}
