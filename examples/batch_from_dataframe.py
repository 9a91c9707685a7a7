"""A batch from a DataFrame: one job per row, waited for together, results back as a DataFrame.

``python examples/batch_from_dataframe.py``
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from _worker import running

from orquestrador import Orquestrador, escavador


@escavador("cotacao")
def cotacao(payload: dict[str, Any]) -> dict[str, Any]:
    return {"total": round(payload["preco"] * payload["quantidade"], 2)}


def main() -> pd.DataFrame:
    pedidos = pd.DataFrame({"preco": [9.9, 20.0, 3.5, 12.0], "quantidade": [3, 1, 10, 2]})
    with Orquestrador() as orq, running("escavador:cotacao"):
        # A column of dicts (or a list, or a generator): one job each, sent in pipelined chunks.
        lote = orq.iniciar_coletas("cotacao", pedidos.to_dict("records"), progress=False)
        lote.wait(60)
        print(lote.contagem())
        frame = lote.resultados()  # payload and result flattened into columns, typed times
    totais = frame[["payload.preco", "payload.quantidade", "resultado.total", "duracao"]]
    print(totais.sort_values("resultado.total").to_string(index=False))
    assert sorted(frame["resultado.total"]) == [20.0, 24.0, 29.7, 35.0]
    return frame


if __name__ == "__main__":
    main()
