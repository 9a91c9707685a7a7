"""Benchmarks of the toolkit against the brokers' raw clients (``python -m bench``; not tests).

Layout:
- ``__main__``: the driver: starts worker processes, runs every scenario per broker, prints the
  markdown table and writes ``--json``.
- ``toolkit``: the orchestrator side of the toolkit scenarios, run as its own process.
- ``plugins``: the escavador the toolkit's worker runs (``orq worker escavador ... --module``).
- ``raw_nats`` / ``raw_redis`` / ``raw_rabbitmq``: the same round trip with only the broker's
  client (the baseline), each with a ``worker`` and a ``producer`` command.
- ``resultados``: ``resultados()`` over a store filled in bulk.
- ``report``: the markdown table and its verdicts.
- ``stages``: launch, worker and collect measured one at a time (for A/B of a change).
- ``profsum``: summarises py-spy raw profiles (``--profile DIR``) into top costs by file:line.
- ``common``: what those share (bodies, percentiles, /proc memory, the result line).
"""
