"""Untrusted XML for the built-in escavadores (sitemaps, feeds), parsed so it cannot hurt the worker.

Everything goes through ``defusedxml``: a document that declares entities ("billion laughs") or
references external ones (XXE) is refused before anything is expanded or fetched, where the
standard library parser would expand or resolve them. Gzip bodies are inflated with a bound, so a
small download cannot become gigabytes in memory.
"""

from __future__ import annotations

import zlib
from xml.etree.ElementTree import Element  # the type only: parsing goes through defusedxml

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from orquestrador import PermanentFailure

GZIP_MAGIC = b"\x1f\x8b"

__all__ = ["Element", "descomprimir", "local", "namespace", "parse_xml", "texto"]


def descomprimir(body: bytes, max_bytes: int, url: str) -> bytes:
    """Inflate a gzip body (``.xml.gz`` served as a file), at most ``max_bytes`` of it; else as is."""
    if not body.startswith(GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise PermanentFailure(f"{url} is not valid gzip ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PermanentFailure(
            f"{url} inflates to more than max_bytes={max_bytes}; raise max_bytes to read it"
        )
    return out


def parse_xml(body: bytes, url: str) -> Element:
    """The document's root element; unsafe or malformed XML is a ``PermanentFailure``."""
    try:
        return fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise PermanentFailure(
            f"{url}: XML refused as unsafe ({type(exc).__name__}: {exc}); entity declarations and "
            "external references are never expanded"
        ) from None
    except ParseError as exc:
        raise PermanentFailure(f"{url} is not well-formed XML ({exc})") from None


def local(tag: str) -> str:
    """``{namespace}name`` → ``name``."""
    return tag.rsplit("}", 1)[-1]


def namespace(tag: str) -> str:
    """``{namespace}name`` → ``namespace`` ('' without one)."""
    return tag[1 : tag.index("}")] if tag.startswith("{") else ""


def texto(elem: Element | None) -> str | None:
    """An element's own text, stripped; None when absent or blank."""
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None
