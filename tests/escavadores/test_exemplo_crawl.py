"""examples/crawl_loja.py runs from end to end: sitemap → http and navegador with selectors →
salvar → DataFrame, on real workers and a real broker."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from escavadores import _chromium
from tests.servers.process import unreachable

EXEMPLO = Path(__file__).resolve().parent.parent.parent / "examples" / "crawl_loja.py"


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_crawl_example_ends_in_a_dataframe_with_the_javascript_page(nats_url: str, tmp_path: Path):
    try:
        _chromium.executavel()
        import playwright  # noqa: F401
    except Exception as exc:
        unreachable(f"the crawl example needs Chromium and Playwright: {exc}")
    frame = runpy.run_path(str(EXEMPLO))["main"](nats_url, tmp_path)
    linhas = {row["nome"]: row for row in frame.to_dict("records")}
    assert set(linhas) == {"Café especial 250 g", "Mel de laranjeira 500 g", "Queijo canastra 1 kg",
                           "Ofertas da semana"}  # fmt: skip
    assert linhas["Mel de laranjeira 500 g"]["preco"] == "R$ 29,00"
    assert linhas["Queijo canastra 1 kg"]["sku"] == "QJO-1K"
    assert (linhas["Café especial 250 g"]["via"], linhas["Ofertas da semana"]["via"]) == ("http", "navegador")
    # Only the browser saw what the page's JavaScript fetched.
    assert json.loads(linhas["Ofertas da semana"]["ofertas"]) == ["Doce de leite 400 g", "Goiabada 300 g"]
    assert json.loads(linhas["Café especial 250 g"]["ofertas"]) == []
