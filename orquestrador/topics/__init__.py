"""Topics: messages anyone may react to, beside the work queues.

A topic is a dot-separated name (``orders.created``, ``orq.resultado_coleta.http``); a
subscription takes a NATS-style pattern, the same on every broker: ``*`` matches exactly one
token, ``>`` (last only) one or more. Subscriptions are **live** (only what is published while
subscribed) or **durable** (named; what was published while away arrives when it comes back,
once per name). Files: :mod:`.patterns` (names and matching), :mod:`.message` (the JSON format
on the wire). Each broker maps them onto what it has (``Broker.publish_topic`` /
``Broker.subscribe_topic``).
"""

from orquestrador.topics.message import TopicMessage
from orquestrador.topics.patterns import matches, validate_pattern, validate_topic

__all__ = ["TopicMessage", "matches", "validate_pattern", "validate_topic"]
