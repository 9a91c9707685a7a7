"""The same job on each broker: only the URL changes, the code and the answers do not.

``python examples/each_broker.py nats://127.0.0.1:4222 redis://127.0.0.1:6379/0 amqp://guest:guest@127.0.0.1/``
(or ``$ORQ_EXAMPLE_BROKERS``, comma separated; without either: the in-process memory broker and
the embedded NATS server). ``kafka://``, ``sqs://`` and ``bullmq://`` work the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _worker import running

from orquestrador import Orquestrador, escavador
from orquestrador.brokers import resolve_url


@escavador("soma")
def soma(payload: dict[str, Any]) -> dict[str, Any]:
    return {"soma": sum(payload["numeros"])}


def main(urls: list[str]) -> dict[str, Any]:
    answers = {}
    for url in urls:
        url = resolve_url(url or None)  # "" or None: the embedded NATS server
        scheme = url.split(":", 1)[0]
        home = Path(tempfile.mkdtemp(prefix=f"orq-{scheme}-"))  # a store per broker, to compare
        with Orquestrador(url, home=home) as orq, running("escavador:soma", url=url):
            answers[scheme] = orq.solicitar("soma", {"numeros": [1, 2, 3, 4]}, timeout=60)
            print(f"{scheme}: ok {answers[scheme]}  ({orq.url})")  # orq.url hides any password
    assert all(answer == {"soma": 10} for answer in answers.values()), answers
    return answers


if __name__ == "__main__":
    given = sys.argv[1:] or [u for u in os.environ.get("ORQ_EXAMPLE_BROKERS", "").split(",") if u]
    main(given or ["memory://", ""])
