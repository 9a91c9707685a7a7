"""Chaos: 10,000 hostile inputs mixed with 1,000 good jobs, through a real worker process.

The inputs are seeded random (reproducible): random bytes, invalid UTF-8, truncated JSON,
JSON that is not an object, envelopes with a field missing or of the wrong type, huge strings,
payloads nested past the decoder's limit, and valid envelopes of the wrong ``tipo_evento`` for
the queue. Each one is checked with the decoder first, so the expected dead letters are exact.
"""

from __future__ import annotations

import collections
import json
import random
from pathlib import Path

from orquestrador import envelope as wire
from orquestrador.errors import EnvelopeError
from tests.chaos.harness import Cenario, Linha, drenar_dlq, esperar_finais, execucoes, fechar, volume

BAD = 10_000
GOOD = 1_000
TEMPLATE = {
    "correlation_id": "c",
    "tipo_evento": "iniciar_coleta",
    "payload": {"k": 1},
    "timestamp": "2025-10-14T12:00:00Z",
}
WRONG_VALUES: list[object] = [
    None,
    7,
    -1.5,
    True,
    [],
    ["a"],
    {},
    {"x": [1]},
    "",
    "não é data",
    "iniciar_tudo",
]


def hostile(rng: random.Random) -> bytes:
    """One input from one of the families in the module docstring."""
    good = json.dumps(TEMPLATE).encode()
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # invalid UTF-8 inside otherwise valid JSON
        cut = rng.randrange(1, len(good) - 1)
        return good[:cut] + bytes([rng.choice([0xFF, 0xC3, 0xED, 0x80])]) + good[cut:]
    if kind == 2:
        return good[: rng.randrange(0, len(good))]
    if kind == 3:
        return json.dumps(rng.choice([[], [TEMPLATE], 42, "iniciar_coleta", None, 1.5])).encode()
    if kind == 4:
        env = dict(TEMPLATE)
        del env[rng.choice(sorted(env))]
        return json.dumps(env).encode()
    if kind == 5:
        return json.dumps({**TEMPLATE, rng.choice(sorted(TEMPLATE)): rng.choice(WRONG_VALUES)}).encode()
    if kind == 6:  # a huge string where a date belongs
        return json.dumps({**TEMPLATE, "timestamp": "9" * rng.randrange(10_000, 200_000)}).encode()
    if kind == 7:
        depth = rng.randrange(300, 3000)
        return (
            json.dumps({**TEMPLATE, "payload": None})
            .replace("null", '{"n":' * depth + "1" + "}" * depth)
            .encode()
        )
    wrong = rng.choice(["resultado_coleta", "iniciar_execucao", "resultado_execucao"])
    return json.dumps({**TEMPLATE, "tipo_evento": wrong}).encode()


def bad_inputs(seed: int, n: int) -> list[bytes]:
    """``n`` inputs a worker of an escavador must refuse (accidentally valid ones are dropped)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    while len(out) < n:
        body = hostile(rng)
        try:
            if wire.decode(body).tipo_evento == "iniciar_coleta":
                continue
        except EnvelopeError:
            pass
        out.append(body)
    return out


async def test_10000_fuzzed_inputs_mixed_with_good_ones(
    broker_name: str, url: str, suffix: str, run_log: Path, report
):
    n_bad, n_good = volume(broker_name, BAD), volume(broker_name, GOOD)
    bad = bad_inputs(seed=7, n=n_bad)
    async with Cenario(url, suffix) as c:
        worker = await c.worker(concurrency=32, visibility_timeout=30)
        good = [
            wire.nova("iniciar_coleta", {"i": i}, alvo=c.alvo, responder_para=c.orq.responder_para)
            for i in range(n_good)
        ]
        c.orq.store.record_sent(good, c.fila)
        items: list[tuple[bytes, str | None]] = [(body, None) for body in bad]
        for i, env in enumerate(good):  # one good job after every ten bad inputs
            items.insert(i * 11, (wire.encode(env), env.message_id))
        await c.broker.publish_many(c.fila, items, window=512)
        ids = [e.message_id or "" for e in good]
        counts = await esperar_finais(c.orq, ids, timeout=300)
        mortos = await drenar_dlq(c.broker, c.fila, n_bad, timeout=300)
        alive = worker.proc.poll() is None

    linha = Linha(broker_name, "10,000 fuzzed inputs + 1,000 good")
    runs = execucoes(run_log)
    report(fechar(linha, c.orq, ids, counts, c.started, runs=runs, mortos=mortos, enviados=len(items)))
    dead_bodies = collections.Counter(m.body for m in mortos)
    linha.perdidos += sum((collections.Counter(bad) - dead_bodies).values())

    assert alive, "hostile input never crashes the worker"
    assert counts == {"ok": n_good}, "every good job next to the bad ones gets its result"
    assert dead_bodies == collections.Counter(bad), "each bad input is dead-lettered once, untouched"
    assert all(m.reason for m in mortos), "every dead letter says why"
    assert set(runs) == set(ids), "no bad input ever reached the handler"
    assert linha.perdidos == 0
