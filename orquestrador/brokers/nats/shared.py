"""Shared state (schedules) in the NATS KV bucket ORQ_AGENDAS: file-stored, kept across restarts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext

from orquestrador.brokers.nats.errors import KeyNotFound, WrongLastSequence, mapped
from orquestrador.brokers.shared import SharedState

BUCKET = "ORQ_AGENDAS"


class NatsState(SharedState):
    """Records in a KV bucket; a lease is a record ``lease.<name>`` holding its owner and end,
    taken and renewed with compare-and-set on the record's revision, so one writer wins. Lease
    ends are wall-clock times: the hosts' clocks are assumed in sync (NTP) within the ttl."""

    def __init__(self, js: Callable[[], JetStreamContext], *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._kv: Any = None

    async def _bucket(self) -> Any:
        if self._kv is None:
            with mapped(f"cannot open the KV bucket {BUCKET}"):
                self._kv = await self._js().create_key_value(
                    bucket=BUCKET, history=1, replicas=self._replicas
                )
        return self._kv

    async def get(self, key: str) -> bytes | None:
        kv = await self._bucket()
        with mapped(f"cannot read {key} from {BUCKET}"):
            try:
                entry = await kv.get(key)
            except KeyNotFound:  # deleted keys too (KeyDeletedError is one)
                return None
        return bytes(entry.value) if entry.value is not None else None

    async def put(self, key: str, value: bytes) -> None:
        kv = await self._bucket()
        with mapped(f"cannot write {key} to {BUCKET}"):
            await kv.put(key, value)

    async def delete(self, key: str) -> bool:
        if await self.get(key) is None:
            return False
        kv = await self._bucket()
        with mapped(f"cannot delete {key} from {BUCKET}"):
            await kv.delete(key)
        return True

    async def items(self, prefix: str) -> dict[str, bytes]:
        """Keys listed from the stream's per-subject state in one request: nats.py's
        ``kv.keys()`` watcher can report "no keys" before its first entry arrives (nats.py
        issue 842), which once listed every schedule as gone."""
        await self._bucket()
        subjects = f"$KV.{BUCKET}." + (prefix + ">" if prefix.endswith(".") else ">")
        with mapped(f"cannot list {BUCKET}"):
            info = await self._js().stream_info(f"KV_{BUCKET}", subjects_filter=subjects)
        out: dict[str, bytes] = {}
        for subject in sorted(info.state.subjects or {}):
            key = subject[len(f"$KV.{BUCKET}.") :]
            if key.startswith(prefix) and (value := await self.get(key)) is not None:
                out[key] = value  # deleted and purged keys keep a marker: get() skips them
        return out

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        kv = await self._bucket()
        key = f"lease.{name}"
        value = json.dumps({"owner": owner, "until": time.time() + ttl}).encode()
        with mapped(f"cannot take the lease {name}"):
            try:
                entry = await kv.get(key)
            except KeyNotFound:
                entry = None
            try:
                if entry is None:
                    await kv.create(key, value)
                    return True
                current = json.loads(entry.value or b"{}")
                if current.get("owner") != owner and float(current.get("until", 0)) > time.time():
                    return False
                await kv.update(key, value, last=entry.revision)
                return True
            except WrongLastSequence:
                return False  # another scheduler wrote it first

    async def holder(self, name: str) -> str | None:
        data = await self.get(f"lease.{name}")
        if data is None:
            return None
        current = json.loads(data)
        return str(current["owner"]) if float(current.get("until", 0)) > time.time() else None

    async def release(self, name: str, owner: str) -> None:
        kv = await self._bucket()
        key = f"lease.{name}"
        with mapped(f"cannot release the lease {name}"):
            try:
                entry = await kv.get(key)
            except KeyNotFound:
                return
            if json.loads(entry.value or b"{}").get("owner") != owner:
                return
            try:
                await kv.update(key, json.dumps({"owner": "", "until": 0}).encode(), last=entry.revision)
            except WrongLastSequence:
                return
