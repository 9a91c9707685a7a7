"""Shared state (schedules) on SQS, which has neither a key-value store nor a lock: FIFO queues.

Records: the whole table is one message in ``orq-agendas.fifo`` (one message group), with a
version. Receiving it is the lock: while one process holds it (its visibility timeout), nobody
else receives it; a writer sends the next version and then deletes the one it holds, a reader
makes it visible again at once. A crash between send and delete leaves two versions, which the
next reader receives together (FIFO order, one call) and settles by version. An empty receive
with messages in flight means someone holds it: wait and try again. The first version is sent
with a fixed deduplication id, so two processes starting at once create one. SQS drops a
message after 14 days, so a reader rewrites a version older than a day.

A lease is a token message in ``orq-lease-<name>.fifo``: the holder receives it with the lease's
ttl as visibility timeout and extends that on each renewal; when the holder dies the token is
visible again after the ttl and the next one receives it. Its owner is the record ``lease.<name>``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from typing import Any, Protocol

from orquestrador.brokers.shared import SharedState
from orquestrador.brokers.sqs.errors import mapped
from orquestrador.errors import BrokerError

RECORDS = "orq-agendas.fifo"
LEASE_QUEUE = "orq-lease-{}.fifo"
GROUP = "orq"
HOLD = 30  # seconds a process may hold the table while it changes it
REFRESH_AFTER = 86400.0
_ATTRIBUTES = {"FifoQueue": "true", "MessageRetentionPeriod": "1209600"}


class Client(Protocol):
    @property
    def sqs(self) -> Any: ...


class SqsState(SharedState):
    """The table as one versioned FIFO message; leases as token messages (see the module)."""

    def __init__(self, broker: Client) -> None:
        self.broker = broker
        self._urls: dict[str, str] = {}
        self._tokens: dict[str, str] = {}  # lease name -> receipt handle of the token held
        self._local = asyncio.Lock()

    async def _url(self, name: str) -> str:
        if name not in self._urls:
            with mapped(f"cannot declare {name}"):
                reply = await self.broker.sqs.create_queue(QueueName=name, Attributes=_ATTRIBUTES)
            self._urls[name] = str(reply["QueueUrl"])
        return self._urls[name]

    async def _in_queue(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        with mapped("cannot count the state's messages"):
            reply = await self.broker.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return sum(int(reply["Attributes"].get(n, 0)) for n in names)

    async def _send(self, url: str, body: dict[str, Any], dedup: str | None = None) -> None:
        with mapped("cannot write the schedules' table"):
            await self.broker.sqs.send_message(
                QueueUrl=url, MessageBody=json.dumps(body), MessageGroupId=GROUP,
                MessageDeduplicationId=dedup or uuid.uuid4().hex,
            )  # fmt: skip

    async def _take(self) -> tuple[str, dict[str, Any], str]:
        """Receive the table (holding it): (queue url, the table, its receipt handle)."""
        url = await self._url(RECORDS)
        deadline = time.monotonic() + HOLD + 5
        while time.monotonic() < deadline:
            with mapped("cannot read the schedules' table"):
                reply = await self.broker.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=HOLD, WaitTimeSeconds=0,
                    AttributeNames=["SentTimestamp"],
                )  # fmt: skip
            messages = reply.get("Messages", [])
            if messages:
                return url, *(await self._settle(url, messages))
            if await self._in_queue(url) == 0:
                await self._send(url, {"versao": 0, "registros": {}}, dedup="genesis")
            await asyncio.sleep(0.05)
        raise BrokerError(f"the schedules' table in {RECORDS} stayed held by another process for {HOLD} s")

    async def _settle(self, url: str, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """The newest version among ``messages``; older ones (a writer died) are deleted."""
        tables = [(json.loads(m["Body"]), m) for m in messages]
        tables.sort(key=lambda t: int(t[0].get("versao", 0)))
        table, newest = tables[-1]
        for _old, message in tables[:-1]:
            with mapped("cannot drop an old version of the schedules' table"):
                await self.broker.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        table["_sent"] = int(newest.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
        return table, str(newest["ReceiptHandle"])

    async def _change(self, key: str, value: bytes | None) -> bool:
        async with self._local:
            url, table, receipt = await self._take()
            records: dict[str, str] = table["registros"]
            existed = key in records
            if value is None:
                records.pop(key, None)
            else:
                records[key] = value.decode()
            await self._replace(url, table, receipt)
        return existed

    async def _replace(self, url: str, table: dict[str, Any], receipt: str) -> None:
        table = {"versao": int(table["versao"]) + 1, "registros": table["registros"]}
        await self._send(url, table)
        with mapped("cannot drop the previous version of the schedules' table"):
            await self.broker.sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)

    async def _records(self) -> dict[str, bytes]:
        async with self._local:
            url, table, receipt = await self._take()
            if time.time() - table["_sent"] > REFRESH_AFTER:
                await self._replace(url, table, receipt)  # SQS keeps a message 14 days at most
            else:
                with mapped("cannot release the schedules' table"):
                    await self._visible_in(url, receipt, 0)
        return {k: v.encode() for k, v in table["registros"].items()}

    async def get(self, key: str) -> bytes | None:
        return (await self._records()).get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self._change(key, value)

    async def delete(self, key: str) -> bool:
        return await self._change(key, None)

    async def items(self, prefix: str) -> dict[str, bytes]:
        return {k: v for k, v in (await self._records()).items() if k.startswith(prefix)}

    async def lease(self, name: str, owner: str, ttl: float) -> bool:
        url = await self._url(LEASE_QUEUE.format(name))
        seconds = max(1, math.ceil(ttl))
        receipt = self._tokens.get(name)
        if receipt is not None:
            try:
                with mapped(f"cannot renew the lease {name}"):
                    await self._visible_in(url, receipt, seconds)
                return True
            except BrokerError:  # expired and taken (or the token is gone): try to take it
                self._tokens.pop(name, None)
        for attempt in (1, 2):
            with mapped(f"cannot take the lease {name}"):
                reply = await self.broker.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=seconds, WaitTimeSeconds=0
                )
            if messages := reply.get("Messages", []):
                self._tokens[name] = str(messages[0]["ReceiptHandle"])
                await self.put(f"lease.{name}", owner.encode())
                return True
            if attempt == 1 and await self._in_queue(url) == 0:
                await self._send(url, {"lease": name}, dedup="token")  # the first: made once
            else:
                break
        return False

    async def holder(self, name: str) -> str | None:
        owner = await self.get(f"lease.{name}")
        return owner.decode() if owner is not None else None

    async def release(self, name: str, owner: str) -> None:
        receipt = self._tokens.pop(name, None)
        if receipt is None:
            return
        url = await self._url(LEASE_QUEUE.format(name))
        with mapped(f"cannot release the lease {name}"):
            await self._visible_in(url, receipt, 0)

    async def _visible_in(self, url: str, receipt: str, seconds: int) -> None:
        sqs = self.broker.sqs
        await sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
