"""What the toolkit supplies for a broker that lacks it, switched on by its ``Capabilities``.

- :mod:`.dedup` — publish dedup by ``message_id`` (``server_dedup=False``), per connection;
  ``Broker.deduplicated`` turns it on from the declaration.
- :mod:`.attempts` — the attempt count in a header, restamped on every redelivery
  (``delivery_count=False``).
- :mod:`.lease` — a client-side lease on each delivery (``server_lease=False``); its deliveries
  settle through the other fallbacks: counted copies, delay buckets, publish-then-ack dead letters.
- :mod:`.delays` — delay buckets for ``nack(delay)`` (``delayed_redelivery=False``).
- :mod:`.limits` — dead-letter caps from ``ORQ_DLQ_MAX_AGE`` / ``ORQ_DLQ_MAX_MESSAGES``, which
  every adapter applies in its own way.

An adapter lacking a server-side lease, delivery count and delayed redelivery (RabbitMQ, and
``tests/toybroker``) hands out :class:`.lease.LeasedDelivery` objects over its own raw message
(:class:`.attempts.Raw`: body, count so far, gone, settle) and supplies two primitives: publish
a copy with a count, and a bucket queue that moves its messages back after its delay.
"""
