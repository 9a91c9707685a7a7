"""NATS JetStream adapter (nats-py).

Mapping: each queue is a JetStream stream ``ORQ_<queue>`` (``.dlq`` becomes ``__dlq``) whose
only subject is the queue name itself, so a message published by hand on ``escavador_x`` is a
job. Streams use work-queue retention and file storage; one durable pull consumer, ``workers``,
is shared by every worker of the queue. The visibility timeout is the consumer's AckWait,
``heartbeat()`` is ``in_progress()``, ``nack(delay)`` is ``nak(delay)``, and the attempt is
JetStream's ``num_delivered``. MaxDeliver is unlimited: the worker runtime dead-letters itself,
because JetStream would otherwise leave an exhausted message silently in the stream.
``publish`` waits for the PubAck and sets ``Nats-Msg-Id`` so duplicates within the stream's
duplicate window are dropped by the server; that makes it safe to re-send such a publish
through a server restart (:mod:`.recovery`). Topics are subjects ``orq.topico.<topic>`` and the
stream ``ORQ-TOPICOS`` (:mod:`.topics`).
"""

from orquestrador.brokers.nats.broker import NatsBroker
from orquestrador.brokers.nats.consumer import NatsConsumer, NatsDelivery
from orquestrador.brokers.nats.names import DURABLE, STREAM_PREFIX, queue_name, stream_name

__all__ = [
    "DURABLE",
    "STREAM_PREFIX",
    "NatsBroker",
    "NatsConsumer",
    "NatsDelivery",
    "queue_name",
    "stream_name",
]
