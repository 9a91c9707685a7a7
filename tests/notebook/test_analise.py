"""resultados(), metricas() and the Parquet export, on real worker results."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_metricas_and_parquet_export(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    orq, nome, _ = env
    lote = orq.iniciar_coletas(nome, [{"n": i} for i in range(9)] + [{"falhar": True}], progress=False)
    lote.wait(20)
    m = orq.metricas()
    row = m[m["alvo"] == nome].iloc[0]
    assert (row["jobs"], row["ok"], row["dead_lettered"]) == (10, 9, 1)
    assert row["taxa_erro"] == pytest.approx(0.1) and 0 <= row["p50_s"] <= row["p95_s"] <= row["p99_s"]
    assert row["p99_s"] == round(row["p99_s"], 3), "latencies are rounded to the millisecond"
    path = orq.exportar_parquet(tmp_path / "out" / "r.parquet", alvo=nome)
    back = pd.read_parquet(path)
    assert len(back) == 10 and "resultado.titulo" in back.columns
    # Types survive the trip: times stay datetimes, durations stay durations, as resultados() gives them.
    assert str(back["enviado_em"].dtype).startswith("datetime64") and str(back["enviado_em"].dt.tz) == "UTC"
    assert str(back["duracao"].dtype).startswith("timedelta64") and back["duracao"].notna().all()
    assert sorted(back["status"].astype(str)) == ["dead-lettered"] + ["ok"] * 9


def test_resultados_filters_by_alvo_status_and_time_range(env) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    orq, nome, _ = env
    old = orq.iniciar_coletas(nome, [{"n": 1}, {"falhar": True}], progress=False).wait(20)
    ids = [j.message_id for j in old]
    orq._core.store._conn().execute(
        f"UPDATE jobs SET enviado_em = enviado_em - 7200 WHERE message_id IN ({','.join('?' * len(ids))})",
        ids,
    )
    orq.iniciar_coletas(nome, [{"n": 2}, {"n": 3}, {"falhar": True}], progress=False).wait(20)
    orq.iniciar_coleta(f"outro_{nome}", {"n": 9})  # another alvo, never consumed

    every = orq.resultados()
    assert len(every) == 6 and str(every["iniciado_em"].dtype) == "datetime64[ns, UTC]"
    assert str(every["duracao"].dtype).startswith("timedelta64") and "payload.n" in every.columns
    assert len(orq.resultados(nome)) == 5
    assert sorted(orq.resultados(nome, status="ok")["payload.n"]) == [1, 2, 3]
    assert len(orq.resultados(nome, status=["erro", "dead-lettered"])) == 2
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert sorted(orq.resultados(nome, status="ok", desde=hour_ago)["payload.n"]) == [2, 3]
    assert orq.resultados(nome, ate=hour_ago)["message_id"].tolist() == ids
    assert orq.resultados(nome, desde=datetime.now(UTC) + timedelta(minutes=1)).empty
