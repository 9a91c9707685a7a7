"""Redis Streams adapter (redis-py asyncio).

Mapping: each queue is a stream ``orq:q:<queue>`` with one consumer group, ``workers``, shared
by every worker of the queue; every Consumer object is a group consumer with a unique name.
An entry holds the body in field ``b``, JSON headers in ``h``, the publisher's message id in
``id`` and the attempts already spent by earlier copies in ``a``. Declared names live in the set
``orq:queues``. ``publish`` returns after the XADD reply and trims with ``MAXLEN ~`` (default
1,000,000; ``?maxlen=`` in the URL or ``maxlen=``); with a message id it is idempotent for 120 s.

``fetch`` runs one loop: move due delayed retries into the stream, XAUTOCLAIM entries idle
longer than the visibility timeout (a killed worker's jobs), then XREADGROUP ``>`` with a short
BLOCK. The attempt is ``a`` plus the entry's delivery count from the pending list. ``ack`` is
XACK + XDEL in one script, so a stream only holds its backlog. ``heartbeat`` re-claims the
entry to its own consumer (resetting its idle time) and ``nack()`` back-dates it so the next
XAUTOCLAIM takes it at once; both only act while this delivery still owns the entry.
``nack(delay)`` writes the copy to the sorted set ``orq:delayed:<queue>`` (scored by the
server-clock due time; fields in hash ``orq:delayed:<queue>:msgs``) and acks the original in
one script; a Lua script moves due copies into the stream atomically, so no two consumers
move one twice. Consumers of one queue should share one visibility timeout: it is the idle time
after which *any* consumer reclaims an entry.

Redis Cluster (``redis://h1:7000,h2:7001?cluster=true``, or ``rediss://``): the same keys with
the queue name as hash tag (``orq:q:{<queue>}``, its DLQ ``orq:q:{<queue>}.dlq``), so every
script touches one slot; publishes wait for one replica (``WAIT``; ``?wait_replicas=``,
``?wait_timeout=``), because the cluster replicates asynchronously (see :mod:`.cluster`).

Files: :mod:`.broker` (client, publishing, queues), :mod:`.cluster` (the cluster client and
WAIT), :mod:`.consumer` (group consumers and deliveries), :mod:`.errors` (the one mapping of
driver errors), :mod:`.events` (pub/sub events that reconnect), :mod:`.names` (keys and entry
fields), :mod:`.scripts` (the Lua run on the
server), :mod:`.slots` (shared rate limits), :mod:`.topics` (topics: Pub/Sub live, a capped
stream for durable subscriptions).
"""

from orquestrador.brokers.redis.broker import DEFAULT_MAXLEN, RedisBroker
from orquestrador.brokers.redis.consumer import RedisConsumer, RedisDelivery
from orquestrador.brokers.redis.names import GROUP, QUEUES_KEY, delayed_key, stream_key

__all__ = [
    "DEFAULT_MAXLEN",
    "GROUP",
    "QUEUES_KEY",
    "RedisBroker",
    "RedisConsumer",
    "RedisDelivery",
    "delayed_key",
    "stream_key",
]
