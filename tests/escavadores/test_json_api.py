"""The json_api escavador against a real paginated JSON API on loopback."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from escavadores.json_api import coletar_json
from orquestrador import Contexto, PermanentFailure, Retry

ITEMS = [{"id": i, "nome": f"item {i}"} for i in range(1, 24)]  # 23 records
OFFSET_CAP = 7  # the server never sends more than this, whatever limit it is asked for
RELEASE = threading.Event()
pedidos: list[str] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        pedidos.append(self.path)
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        if route == "/lista":
            self._json(200, ITEMS[:3])
        elif route == "/pages":
            size = int(q.get("per_page", 10))
            start = (int(q["page"]) - 1) * size
            self._json(200, {"data": {"items": ITEMS[start : start + size]}, "total": len(ITEMS)})
        elif route == "/zero-based":
            start = int(q["p"]) * 10
            self._json(200, {"results": ITEMS[start : start + 10]})
        elif route == "/wp":
            start = (int(q["page"]) - 1) * 10
            if start >= len(ITEMS):
                self._json(400, {"code": "rest_post_invalid_page_number"})
            else:
                self._json(200, ITEMS[start : start + 10])
        elif route == "/offset":
            start, limit = int(q["offset"]), min(int(q["limit"]), OFFSET_CAP)
            self._json(200, {"results": ITEMS[start : start + limit]})
        elif route == "/cursor":
            start = int(q.get("after", "0"))
            nxt = str(start + 10) if start + 10 < len(ITEMS) else None
            self._json(200, {"items": ITEMS[start : start + 10], "meta": {"next": nxt}})
        elif route == "/cursor-loop":
            self._json(200, {"items": ITEMS[:2], "next_cursor": "sempre-o-mesmo"})
        elif route == "/link":
            page = int(q.get("page", "1"))
            extra = {"Link": f'</link?page={page + 1}>; rel="next"'} if page * 10 < len(ITEMS) else {}
            self._json(200, ITEMS[(page - 1) * 10 : page * 10], extra)
        elif route == "/body-next":
            page = int(q.get("p", "1"))
            nxt = f"/body-next?p={page + 1}" if page * 10 < len(ITEMS) else None
            self._json(200, {"entries": ITEMS[(page - 1) * 10 : page * 10], "links": {"next": nxt}})
        elif route == "/link-loop":
            self._json(200, ITEMS[:1], {"Link": '</link-loop>; rel="next"'})
        elif route == "/para-fora":
            self._json(
                200, [{"auth": self.headers.get("Authorization")}], {"Link": f'<{q["alvo"]}/eco>; rel="next"'}
            )
        elif route == "/sem-fim":
            self._json(200, {"items": [{"page": q.get("page")}]})
        elif route == "/eco":
            self._json(200, {"rows": [{"query": q, "auth": self.headers.get("Authorization")}]})
        elif route == "/objeto":
            self._json(200, {"nome": "sem lista", "versao": 2})
        elif route == "/malformado":
            self._send(200, b'{"items": [1, 2,', "application/json")
        elif route == "/html":
            self._send(200, b"<html><body>login</body></html>", "text/html")
        elif route == "/ocupado":
            self._json(429, {"erro": "devagar"}, {"Retry-After": "11"})
        elif route == "/ocupado-ate":
            when = formatdate(time.time() + 30, usegmt=True)
            self._json(503, {"erro": "manutenção"}, {"Retry-After": when})
        elif route == "/quebrado":
            self._json(500, {"erro": "boom"})
        elif route == "/proibido":
            self._json(403, {"erro": "sem token"})
        elif route == "/trava":
            RELEASE.wait(10)
            self._json(200, [])
        else:
            self._json(404, {"erro": "não existe"})

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    RELEASE.set()
    server.shutdown()


@pytest.fixture(scope="module")
def outra_api() -> Iterator[str]:
    """The same API on another port: another origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(autouse=True)
def _clear_requests() -> None:
    pedidos.clear()


def ctx() -> Contexto:
    return Contexto("c", "m", 1, "json_api", logging.LoggerAdapter(logging.getLogger("t"), {}))


async def test_without_pagination_one_page_that_is_a_list_is_the_records(api: str):
    result = await coletar_json({"url": f"{api}/lista"}, ctx())
    assert result == {"records": ITEMS[:3], "paginas": 1, "total": 3, "truncado": False}


async def test_page_numbers_with_a_page_size_and_a_dotted_records_path(api: str):
    payload = {
        "url": f"{api}/pages",
        "records_path": "data.items",
        "paginacao": {"tipo": "page", "tamanho": 10},
    }
    result = await coletar_json(payload, ctx())
    assert result["records"] == ITEMS
    assert result["paginas"] == 4  # three with records, then the empty one that ends it
    assert result["truncado"] is False
    assert pedidos == [f"/pages?page={n}&per_page=10" for n in (1, 2, 3, 4)]


async def test_page_param_name_and_start_are_configurable(api: str):
    payload = {"url": f"{api}/zero-based", "paginacao": {"tipo": "page", "param": "p", "inicio": 0}}
    result = await coletar_json(payload, ctx())
    assert result["records"] == ITEMS
    assert pedidos[0] == "/zero-based?p=0"


async def test_a_client_error_past_the_last_page_ends_page_numbering(api: str):
    result = await coletar_json({"url": f"{api}/wp", "paginacao": "page"}, ctx())
    assert result["records"] == ITEMS
    assert result["paginas"] == 3


async def test_offset_grows_by_what_the_server_sent_even_when_it_caps_the_limit(api: str):
    payload = {"url": f"{api}/offset", "paginacao": {"tipo": "offset", "tamanho": 10}}
    result = await coletar_json(payload, ctx())
    assert result["records"] == ITEMS  # nothing skipped although 7 < 10 came per page
    assert pedidos[:3] == [
        "/offset?offset=0&limit=10",
        "/offset?offset=7&limit=10",
        "/offset?offset=14&limit=10",
    ]
    assert result["paginas"] == 5  # 7 + 7 + 7 + 2, then an empty page


async def test_cursor_from_a_dotted_path_sent_as_a_param(api: str):
    payload = {
        "url": f"{api}/cursor",
        "paginacao": {"tipo": "cursor", "param": "after", "caminho": "meta.next"},
    }
    result = await coletar_json(payload, ctx())
    assert result["records"] == ITEMS
    assert result["paginas"] == 3
    assert pedidos == ["/cursor", "/cursor?after=10", "/cursor?after=20"]


async def test_a_cursor_that_comes_back_again_stops_the_loop(api: str):
    result = await coletar_json({"url": f"{api}/cursor-loop", "paginacao": "cursor"}, ctx())
    assert result["paginas"] == 2
    assert result["truncado"] is False


async def test_next_link_from_the_link_header(api: str):
    result = await coletar_json({"url": f"{api}/link", "paginacao": "next_link"}, ctx())
    assert result["records"] == ITEMS
    assert result["paginas"] == 3
    assert pedidos == ["/link", "/link?page=2", "/link?page=3"]


async def test_next_link_from_a_dotted_path_in_the_body_relative_to_the_page(api: str):
    payload = {"url": f"{api}/body-next", "paginacao": {"tipo": "next_link", "caminho": "links.next"}}
    result = await coletar_json(payload, ctx())
    assert result["records"] == ITEMS  # found under "entries" without a records_path
    assert result["paginas"] == 3


async def test_a_next_link_pointing_back_stops_the_loop(api: str):
    result = await coletar_json({"url": f"{api}/link-loop", "paginacao": "next_link"}, ctx())
    assert result["paginas"] == 1


async def test_payload_headers_never_follow_a_next_link_to_another_origin(api: str, outra_api: str):
    payload = {
        "url": f"{api}/para-fora",
        "params": {"alvo": outra_api},
        "headers": {"Authorization": "Bearer abc"},
        "paginacao": "next_link",
    }
    result = await coletar_json(payload, ctx())
    assert result["records"] == [{"auth": "Bearer abc"}, {"query": {}, "auth": None}]


async def test_max_pages_bounds_an_api_that_never_ends(api: str):
    payload = {"url": f"{api}/sem-fim", "paginacao": "page", "max_pages": 4}
    result = await coletar_json(payload, ctx())
    assert result["paginas"] == 4
    assert result["truncado"] is True
    assert [r["page"] for r in result["records"]] == ["1", "2", "3", "4"]


async def test_params_headers_and_records_path_with_a_list_index(api: str):
    payload = {
        "url": f"{api}/eco?fixo=1",
        "params": {"q": "café", "n": 5, "ativo": True},
        "headers": {"Authorization": "Bearer abc"},
        "records_path": "rows.0.query",
    }
    with pytest.raises(PermanentFailure, match="holds a dict"):
        await coletar_json(payload, ctx())
    result = await coletar_json({**payload, "records_path": "rows"}, ctx())
    assert result["records"] == [
        {"query": {"fixo": "1", "q": "café", "n": "5", "ativo": "true"}, "auth": "Bearer abc"}
    ]


async def test_malformed_json_fails_permanently_with_a_clear_message(api: str):
    with pytest.raises(PermanentFailure, match="did not answer valid JSON"):
        await coletar_json({"url": f"{api}/malformado"}, ctx())
    with pytest.raises(PermanentFailure, match=r"valid JSON.*<html>"):
        await coletar_json({"url": f"{api}/html"}, ctx())


async def test_an_answer_without_a_records_list_names_its_keys(api: str):
    with pytest.raises(PermanentFailure, match=r"keys 'nome', 'versao'.*records_path"):
        await coletar_json({"url": f"{api}/objeto"}, ctx())
    with pytest.raises(PermanentFailure, match=r"'data\.items' is not in the answer"):
        await coletar_json({"url": f"{api}/objeto", "records_path": "data.items"}, ctx())


async def test_404_and_403_fail_permanently_naming_the_status(api: str):
    with pytest.raises(PermanentFailure, match="404"):
        await coletar_json({"url": f"{api}/nada"}, ctx())
    with pytest.raises(PermanentFailure, match="403"):
        await coletar_json({"url": f"{api}/proibido", "paginacao": "page"}, ctx())


async def test_500_asks_for_a_retry(api: str):
    with pytest.raises(Retry, match="500"):
        await coletar_json({"url": f"{api}/quebrado"}, ctx())


async def test_429_asks_for_a_retry_after_the_servers_delay(api: str):
    with pytest.raises(Retry) as info:
        await coletar_json({"url": f"{api}/ocupado"}, ctx())
    assert info.value.delay == 11


async def test_retry_after_as_an_http_date_is_honoured(api: str):
    with pytest.raises(Retry) as info:
        await coletar_json({"url": f"{api}/ocupado-ate"}, ctx())
    assert info.value.delay is not None and 25 < info.value.delay <= 31


async def test_a_server_that_hangs_raises_httpx_timeout(api: str):
    with pytest.raises(httpx.TimeoutException):
        await coletar_json({"url": f"{api}/trava", "timeout": 0.3}, ctx())


async def test_a_page_over_max_bytes_fails_permanently(api: str):
    with pytest.raises(PermanentFailure, match="max_bytes=100"):
        await coletar_json({"url": f"{api}/pages?page=1", "max_bytes": 100}, ctx())


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"paginacao": "pagina"}, "must be one of page, offset, cursor, next_link"),
        ({"paginacao": {"tipo": "page", "tamanhho": 10}}, "unknown: tamanhho"),
        ({"paginacao": {"tipo": "offset", "inicio": -1}}, "'inicio' must be a whole number"),
        ({"paginacao": {"tipo": "cursor", "caminho": ""}}, "'caminho' must be a non-empty string"),
        ({"max_pages": 0}, "'max_pages' must be a whole number >= 1"),
        ({"timeout": "rápido"}, "'timeout' must be a number"),
        ({"params": ["q"]}, "'params' must be an object"),
        ({"records_path": 3}, "'records_path' must be a dotted path"),
        ({"url": "file:///etc/passwd"}, "http"),
    ],
)
async def test_bad_options_fail_permanently_before_any_request(api: str, option: dict, match: str):
    with pytest.raises(PermanentFailure, match=match):
        await coletar_json({"url": f"{api}/lista", **option}, ctx())
    assert pedidos == []


async def test_a_draining_worker_hands_the_job_back():
    cancelled = ctx()
    cancelled.cancelado.set()
    with pytest.raises(Retry, match="shutting down"):
        await coletar_json({"url": "http://127.0.0.1:1/"}, cancelled)
