"""RabbitMQ adapter (pika's asyncio connection adapter).

Mapping. Every queue is a durable classic queue of the same name on the default exchange, so
the routing key is the queue name, as in the interface note, and a message published there by
hand with plain pika is a job. Messages are persistent (delivery_mode 2) and ``publish`` returns
once the broker's publisher confirm arrived; confirms are pipelined (one future per delivery tag
on one confirm channel, see :mod:`.channel`), so ``publish_many`` keeps hundreds in
flight. ``<queue>.dlq`` is a second durable queue: ``dead_letter`` publishes the body there with
``dead_letter_headers`` (confirmed) and only then acks. A queue that already exists with other
properties (e.g. non-durable, declared as in the interface note) is used as it is, with one
warning: the 406 closes the channel, a new one declares it passively.

Threading. No extra thread: pika's ``AsyncioConnection`` runs on the event loop that called
``connect()`` and its callbacks resolve futures there, so a broker belongs to that loop (the
sync facade gives it its own). One connection carries a confirm channel for publishing, an admin
channel for declares and stats, and one channel per consumer, so closing a consumer, or a worker
dying, hands exactly its unacked messages back to the queue.

Quorum queues (``?queue_type=quorum``, for clusters): every queue is declared with
``x-queue-type: quorum``, the attempt number is the broker's ``x-delivery-count`` (so nothing is
restamped, and a peek or a message returned by a stopping consumer counts one delivery for
good), a nacked publish is sent again on a fresh channel, and since their counts lag right after
a requeue, ``peek`` and a closing consumer wait (at most a second) until the count shows what
they returned.

Attempts. Classic queues keep no delivery count, so the consumer restamps
redelivered messages (:mod:`..support.attempts`: the ``x-orq-attempts`` header, a counted copy
then an ack of the original). The broker marks every message it hands out again as redelivered
(``nack()``, an expired lease, a consumer that died or lost its connection), so repeated crashes
count too. Dead-letter queues are not restamped.

Leases. RabbitMQ itself only redelivers when a channel closes, so each fetched delivery gets the
client-side lease of :mod:`..support.lease`; when one expires the adapter nacks it back to the
queue (if its consumer is not fetching at that moment, the consumer first cancels its
subscription so that another consumer gets it). Messages prefetched but never fetched (a
consumer closing or pausing) go back as copies with their count unchanged, so they do not count
an attempt nobody made.

Delayed retry. ``nack(delay)`` uses the delay buckets of :mod:`..support.delays`: the bucket
``<queue>.retry.<ms>`` is a durable queue with ``x-message-ttl`` = ms that dead-letters to
``""``/``<queue>``, and ``x-expires`` removes it ten minutes after its last use.

Registry. AMQP 0-9-1 cannot list queues: the names this toolkit declares are recorded on the
broker, in ``orq.queues`` (:mod:`.queue_registry`).

Inspection. ``depth`` and ``consumers`` come from a passive declare, ``dead_letters`` from the
dlq's; ``in_flight`` counts this process's unsettled deliveries on the queue (fetched, buffered
or being restamped); other processes' unacked messages are invisible without the management
API. These and ``peek`` first wait for this broker's publishes still in flight, so a process
reads its own writes. ``peek`` has no browse in AMQP 0-9-1: it ``basic_get``s up to ``limit`` messages on a
separate channel and closes it, which puts them back in place but marks them redelivered, so
when they are consumed they count one more attempt and go to the back. ``oldest_age`` is None.

Connection loss. The connection is re-opened with exponential backoff (0.2 s to 5 s, jittered).
Publishes that lost their channel before the confirm are sent again (so a duplicate is possible,
as with every at-least-once broker; ``message_id`` tells) or raise BrokerError after
``publish_timeout``. ``publish`` with a ``message_id`` already published by this connection in
the last 120 s is dropped (:mod:`..support.dedup`; RabbitMQ has no server-side dedup, so another
connection's copy is delivered); consumers subscribe again on their next fetch; event and live
topic subscriptions are re-bound, durable topic subscriptions consume again. Deliveries of the
lost channel went back to the queue: acking them raises BrokerError.

Files: :mod:`.broker` (publishing, queues), :mod:`.connection` (the connection, its servers and
reconnects), :mod:`.consumer` (consumers and deliveries), :mod:`.errors` (the one mapping of
failures), :mod:`.channel` (pika made awaitable; it imports nothing of the toolkit),
:mod:`.events`, :mod:`.topics` (the exchange ``orq.topicos``), :mod:`.queue_registry`, and two
patches of pika applied when the first connection opens (:mod:`.pika_writes`, :mod:`.pika_reads`).
"""

from orquestrador.brokers.rabbitmq.broker import RabbitMQBroker
from orquestrador.brokers.rabbitmq.consumer import RabbitMQConsumer, RabbitMQDelivery
from orquestrador.brokers.rabbitmq.queue_registry import REGISTRY
from orquestrador.brokers.support.attempts import ATTEMPTS_HEADER
from orquestrador.brokers.support.delays import bucket_name

__all__ = [
    "ATTEMPTS_HEADER",
    "REGISTRY",
    "RabbitMQBroker",
    "RabbitMQConsumer",
    "RabbitMQDelivery",
    "bucket_name",
]
