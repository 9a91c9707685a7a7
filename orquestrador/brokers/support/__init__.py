"""What the toolkit supplies for a broker that lacks it, switched on by its ``Capabilities``.

- :mod:`.dedup` — publish dedup by ``message_id`` (for ``server_dedup=False``), per connection.
- :mod:`.limits` — dead-letter caps from ``ORQ_DLQ_MAX_AGE`` / ``ORQ_DLQ_MAX_MESSAGES``, which
  every adapter applies in its own way.
"""
