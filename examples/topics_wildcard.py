"""Topics with wildcard subscribers: services react to what happens, without queues or polling.

``python examples/topics_wildcard.py``

An audit logger follows every order event (``orders.>``), a notifier only the first-level ones
(``orders.*``: one token, so ``orders.created.eu`` is not for it). Each subscriber gets its own
copy; a live subscription receives what is published while it is subscribed.
"""

from __future__ import annotations

import time

from orquestrador import Orquestrador, TopicMessage


def main() -> tuple[list[str], list[str]]:
    auditoria: list[str] = []
    notificados: list[str] = []

    def auditar(msg: TopicMessage) -> None:  # runs on the Orquestrador's loop thread: be quick
        auditoria.append(f"{msg.topico} {msg.dados} {msg.headers}")

    with (
        Orquestrador() as orq,
        orq.assinar("orders.>", auditar),
        orq.assinar("orders.*", lambda m: notificados.append(m.topico)),
    ):
        orq.publicar("orders.created", {"id": 1, "total": 30.0}, headers={"origem": "loja"})
        orq.publicar("orders.created.eu", {"id": 2})
        orq.publicar("orders.paid", {"id": 1})
        orq.publicar("payments.created", {"id": 9})  # neither subscribes to payments
        with orq.assinar("orders.paid") as pagamentos:  # the iterator form
            orq.publicar("orders.paid", {"id": 3})
            print("iterator got", pagamentos.receber(timeout=10))
        deadline = time.monotonic() + 10  # live messages arrive on the loop thread meanwhile
        while (len(auditoria), len(notificados)) != (4, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
    print("\n".join(auditoria))
    print(notificados)
    assert notificados == ["orders.created", "orders.paid", "orders.paid"]
    return auditoria, notificados


if __name__ == "__main__":
    main()
