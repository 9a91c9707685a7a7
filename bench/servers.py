"""The brokers a bench run measures: the URLs given, else servers started for the run.

Like the tests, the bench needs no broker installed and running beforehand: NATS is the
embedded nats-server, Redis a ``redis-server`` without persistence, RabbitMQ a node of its own,
Kafka a one-node KRaft, SQS moto in server mode (tests/servers), each on free loopback ports with
its data in the run's directory, stopped at the end; moto's dummy AWS credentials go into this
process's environment, so the scenario processes inherit them. ``bash .ci/install`` installs the
programs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


class ServerUnavailable(RuntimeError):
    """A broker the run needs can neither be reached nor started; the message says what to install."""


@contextlib.contextmanager
def broker_urls(brokers: list[str], given: dict[str, str | None], work: Path) -> Iterator[dict[str, str]]:
    """Name → URL for each of ``brokers``; what is not ``given`` is started here and stopped on exit."""
    from orquestrador.brokers import embedded
    from tests.servers import KafkaServer, RabbitServer, RedisServer
    from tests.servers.sqs_server import TEST_ENVIRONMENT, SqsServer

    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name in brokers:
            url = given.get(name)
            if url:
                urls[name] = url
                continue
            print(f"[bench] starting a {name} server for this run ...", file=sys.stderr, flush=True)
            try:
                if name == "nats":
                    urls[name] = embedded.ensure_server(work / "nats").url
                    stack.callback(embedded.stop, work / "nats")
                elif name == "redis":
                    urls[name] = stack.enter_context(RedisServer(work / "redis", durable=False)).url
                elif name == "bullmq":
                    server = stack.enter_context(RedisServer(work / "bullmq", durable=False))
                    urls[name] = server.url.replace("redis://", "bullmq://", 1)
                elif name == "rabbitmq":
                    urls[name] = stack.enter_context(RabbitServer(work / "rabbitmq")).url
                elif name == "kafka":
                    urls[name] = stack.enter_context(KafkaServer(work / "kafka")).url
                elif name == "sqs":
                    os.environ.update(TEST_ENVIRONMENT)  # moto's dummy credentials, for this run only
                    urls[name] = stack.enter_context(SqsServer(work / "sqs")).url
                else:
                    raise ServerUnavailable(f"no server to start for {name}")
            except (pytest.skip.Exception, pytest.fail.Exception) as exc:  # tests.servers' refusal
                raise ServerUnavailable(str(exc.msg)) from None
        yield urls
