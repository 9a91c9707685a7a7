"""Functions the python executor's tests allow-list and call."""

from __future__ import annotations

import asyncio
import threading
from datetime import date
from os import getcwd  # re-exported: defined in posix, not here

__all__ = ["getcwd"]


def somar(a: int, b: int = 0) -> dict[str, int]:
    return {"soma": a + b}


def dobro(n: int) -> int:
    return n * 2


async def esperar_e_ecoar(texto: str, segundos: float = 0.01) -> dict[str, str]:
    await asyncio.sleep(segundos)
    return {"eco": texto, "thread": threading.current_thread().name}


def em_que_thread() -> str:
    return threading.current_thread().name


def dia() -> date:
    return date(2024, 5, 17)


def objeto() -> object:
    return object()


def _privada() -> str:
    return "never callable"
