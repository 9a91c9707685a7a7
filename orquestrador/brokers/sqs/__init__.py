"""AWS SQS adapter (aiobotocore), with SNS for events.

URLs. ``sqs://REGION`` or ``sqs://`` (the region from the AWS environment); ``?endpoint_url=``
for an SQS-compatible server (botocore also reads ``AWS_ENDPOINT_URL_SQS`` and
``AWS_ENDPOINT_URL``); ``?fifo=true`` for FIFO queues; ``?max_receives=`` for the redrive
policy (default 50). Credentials come only from the standard AWS chain (environment, profile,
SSO, instance or task role), never from the URL.

Mapping. Each toolkit queue is an SQS queue, named by :mod:`.names` (``<queue>.dlq`` is
``<queue>__dlq``; ``.fifo`` appended on FIFO; a name over 80 characters shortened with a hash),
created with 14 days' retention and tagged with its toolkit name, which is how ``queues()``
finds them. ``publish`` returns once SendMessage(Batch) answered; sends made together leave as
SendMessageBatch calls (:mod:`.sender`). Headers travel as one JSON message attribute, so none
is lost to SQS's ten-attribute limit; a body that is not SQS text travels base64-encoded.

Consuming. ``fetch`` is ReceiveMessage with the consumer's visibility timeout as the lease and
a long poll (``WaitTimeSeconds``, up to 20 s; short polls under a second). The attempt is the
message's ``ApproximateReceiveCount``. ``ack`` is DeleteMessage (``ack_many``
DeleteMessageBatch); ``heartbeat`` pushes the visibility timeout forward
(ChangeMessageVisibility); ``nack(delay)`` is ChangeMessageVisibility to ``delay`` (whole
seconds, at most 12 h), so SQS holds the message back itself. ``dead_letter`` sends the body
to ``<queue>.dlq`` with the reason, error type and attempts in headers, then deletes it; the
queue also has a redrive policy to that DLQ after ``max_receives`` receives, a safety net for
a message that keeps killing its workers before the runtime's own count (``max_tentativas``)
dead-letters it (such a letter has no reason headers).

FIFO (``?fifo=true``). Every queue, DLQs included, is a FIFO queue; the message group is the
envelope's ``correlation_id`` and the deduplication id is the ``message_id``. A chain's jobs run
one after another, in order: SQS hands out no message of a group while one is in flight, and
the consumer receives one message per ReceiveMessage (several in parallel, each of another
chain), so a batch never holds two of one chain. The deduplication id drops a repeated id,
within SQS's five-minute window, from any client (``deduplicated`` skips the per-connection
fallback). Standard queues use that fallback (:mod:`..support.dedup`).

Inspection. ``stats`` reads the queue attributes: depth = visible + delayed, in flight = not
visible (every consumer's, and messages nacked with a delay), dead letters = all of the DLQ's;
``oldest_age`` and ``consumers`` are unknown (the age of the oldest message is a CloudWatch
metric, not an attribute). ``peek`` is a receive (hidden 5 s) followed by making the messages
visible again at once, which adds one to their receive count: not side-effect free.
``purge`` receives and deletes (PurgeQueue runs once a minute and finishes later). Events go
over SNS (:mod:`.events`), and so do topics: one SNS topic, an SQS queue per subscription
(:mod:`.topics`, on :mod:`.fanout`).

Files: :mod:`.broker` (client, publishing, queues), :mod:`.consumer` (consumers and
deliveries), :mod:`.errors` (the one mapping of driver errors), :mod:`.names` (names, headers,
bodies), :mod:`.sender` (batched sends), :mod:`.events` (SNS), :mod:`.topics` and :mod:`.fanout`
(topics over SNS to SQS).
"""

from orquestrador.brokers.sqs.broker import SqsBroker
from orquestrador.brokers.sqs.consumer import SqsConsumer, SqsDelivery
from orquestrador.brokers.sqs.names import queue_name, sqs_name

__all__ = ["SqsBroker", "SqsConsumer", "SqsDelivery", "queue_name", "sqs_name"]
