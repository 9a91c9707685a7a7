"""A toy broker package, as a third party would write one: registered through the entry-point
group ``orquestrador.brokers`` (``tests/brokers/test_toy_broker.py`` installs it for a run) and
built on the memory broker with a reduced capability set.

It lacks server-side dedup, so the toolkit's fallback (``Broker.deduplicated``, per connection)
switches on from its declaration, and the contract suite expects the per-connection behaviour
from the same declaration.
"""

from __future__ import annotations

from orquestrador.brokers.base import validate_queue_name
from orquestrador.brokers.memory import MemoryBroker, _Entry


class ToyBroker(MemoryBroker):
    scheme = "toy"
    capabilities = MemoryBroker.capabilities.without("server_dedup")

    async def publish(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        validate_queue_name(queue)

        async def put() -> None:  # the memory space, without its own dedup
            with self._space.lock:
                seq = next(self._space.seq)
                entry = _Entry(seq, bytes(body), dict(headers or {}), message_id)
                self._space.queue(queue).waiting[seq] = entry

        await self.deduplicated(queue, message_id, put)

    async def delete(self, queue: str) -> None:
        await super().delete(queue)
        self.forget_ids(queue)

    def __repr__(self) -> str:
        return f"ToyBroker({self.url!r})"
