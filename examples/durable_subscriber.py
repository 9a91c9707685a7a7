"""A durable subscriber catches up: what was published while it was away arrives when it is back.

``python examples/durable_subscriber.py`` (on brokers whose capabilities have
``durable_topics``: NATS, Redis, RabbitMQ, BullMQ; see the README's Topics table)

A live subscription sees only what is published while it listens; a durable one has a name,
and the broker keeps its messages until it comes back (each delivered once per name, acked once
the callback returned or, in the iterator form, once the next message is asked for).
"""

from __future__ import annotations

import uuid

from orquestrador import Orquestrador


def main() -> list[int]:
    nome = f"faturamento-{uuid.uuid4().hex[:6]}"  # a fixed name in real use, e.g. "faturamento"
    with Orquestrador() as orq:
        try:
            with orq.assinar("invoices.*", duravel=nome) as primeira:
                orq.publicar("invoices.issued", {"n": 1})
                print("while subscribed:", primeira.receber(timeout=10))
            # The subscriber is away (a deploy, a crash): these wait for it on the broker.
            for n in (2, 3, 4):
                orq.publicar("invoices.issued", {"n": n})
            recebidos: list[int] = []
            with orq.assinar("invoices.*", duravel=nome) as de_volta:
                while len(recebidos) < 3 and (msg := de_volta.receber(timeout=10)) is not None:
                    recebidos.append(msg.dados["n"])
            print("caught up on:", recebidos)
            assert recebidos == [2, 3, 4]
            return recebidos
        finally:
            orq.apagar_assinatura(nome)  # the name is no longer needed: drop what waits for it


if __name__ == "__main__":
    main()
