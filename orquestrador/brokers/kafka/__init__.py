"""Apache Kafka adapter (aiokafka).

Mapping. Every queue is a topic of the same name (``?partitions=N`` in the URL when the toolkit
creates it; else the cluster's default), consumed by one consumer group, ``orq.<queue>``, shared
by every worker of the queue. A record's key is the envelope's ``correlation_id``, so a chain
keeps its order within a partition; its value is the envelope as it is, so a plain producer
sending JSON to ``escavador_<nome>`` makes a job. The publisher's ``message_id`` rides in the
``x-orq-message-id`` header. ``publish`` returns once every in-sync replica has the record
(``acks=all``, idempotent producer).

Why consumer groups and not share groups. Kafka 4.1 has share groups (KIP-932: queues with
per-record acknowledgement and delivery counts), which would give this adapter a server-side
lease and delivery count; aiokafka, the maintained asyncio client, does not speak their protocol
yet. So records are settled by committed offset and the rest comes from :mod:`..support`.

Commits. Jobs of one partition run concurrently and finish out of order; a consumer commits the
lowest offset not finished, so a crash never skips an unfinished job (:mod:`.ledger`). Before it
hands records out it commits a mark saying how far it handed out (in the commit's metadata),
so the next owner of the partition knows which records were delivered before: those are
restamped (:mod:`..support.attempts`: a copy with the count plus one at the end of the topic,
then the original is finished), which keeps ``max_tentativas`` and the ``WorkerLost`` guard
working across crashes. Finished records above the commit are listed in the metadata too and
not run again.

Leases. Kafka moves records only when their consumer leaves the group: a killed worker's
partitions go to the others after the session timeout (the visibility timeout, at least Kafka's
6 s minimum), while aiokafka's background heartbeat keeps a busy worker in. Each delivery holds
a client-side lease (:mod:`..support.lease`); one that expires without a heartbeat is handed back
as a counted copy, and if its consumer is not fetching, the consumer leaves the group until its
next fetch so another member gets the partition. Rebalances are eager in Kafka's classic
protocol, so the group uses :mod:`.assignor`: partitions stay with their owner, and one with
jobs in flight never moves to a joining member.

Delayed retry. ``nack(delay)`` writes a copy to ``<queue>.retry`` with its due time in a header
and finishes the original; members of the group also consume that topic, keep copies until due
(up to 10,000 in memory) and move them back to ``<queue>`` as they fetch.

Dead letters. ``<queue>.dlq`` is a topic of one partition with reason headers; replay consumes
it in group ``orq.<queue>.dlq`` and positions are its offsets. ``ORQ_DLQ_MAX_MESSAGES`` and
``ORQ_DLQ_MAX_AGE`` are applied by deleting records (DeleteRecords) at each dead-letter write
and before each read of the dead letters, as Redis trims its stream (``retention.ms`` is set too,
but Kafka acts on it only when a log segment rolls).

Inspection. ``depth`` is the group's lag (end offsets minus committed) less the records handed
out; ``in_flight`` comes from the commits' hand-out marks, so it counts every worker's. ``peek``
reads from the committed offset with a client outside the group (no side effect); ``purge``
deletes records up to the end (DeleteRecords). ``oldest_age`` is not read (None).

Topics (publish/subscribe, not queues) share one Kafka topic, ``orq.topicos``; durable
subscriptions are consumer groups ``orq.topico.<name>`` (:mod:`.topics` says why one topic).

Files: :mod:`.broker` (clients, publishing, topics, inspection), :mod:`.consumer` (group
members), :mod:`.delivery` (records and deliveries), :mod:`.ledger` (per-partition progress and
commit metadata), :mod:`.assignor`, :mod:`.config` (the URL, the group's timeouts),
:mod:`.errors` (the one mapping of driver errors), :mod:`.names`, :mod:`.events`, :mod:`.topics`.
"""

from orquestrador.brokers.kafka.broker import KafkaBroker
from orquestrador.brokers.kafka.consumer import KafkaConsumer
from orquestrador.brokers.kafka.delivery import KafkaDelivery
from orquestrador.brokers.kafka.names import EVENTS_TOPIC, group_of, retry_topic

__all__ = ["EVENTS_TOPIC", "KafkaBroker", "KafkaConsumer", "KafkaDelivery", "group_of", "retry_topic"]
