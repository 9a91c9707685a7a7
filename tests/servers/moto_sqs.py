"""moto's server (``python -m tests.servers.moto_sqs -H host -p port``) with its SQS made thread-safe.

moto serves each request on its own thread, and its SQS backend changes a queue without a lock:
``receive_message`` checks that a message is visible and then marks it received, so two
consumers polling at once can both receive it, and ``delete_message`` rebuilds the message list,
so two deletes at once can lose one (the message comes back) and a send during a delete can be
lost. SQS does none of that. Here every SQS backend call runs under one lock; a long poll
repeats a non-waiting receive, waiting between passes without the lock, until its time is up.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from moto.server import main
from moto.sqs.models import SQSBackend

_LOCK = threading.RLock()  # re-entrant: an SNS delivery or a redrive calls back into the backend


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    return call


def _receive(receive: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(receive)
    def call(
        self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:  # fmt: skip
        end = time.monotonic() + wait_seconds_timeout
        while True:
            with _LOCK:
                found = receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
            if found or time.monotonic() >= end:
                return found
            time.sleep(0.02)  # a waiting long poll holds no lock

    return call


def install() -> None:
    for name, method in inspect.getmembers(SQSBackend, inspect.isfunction):
        if not name.startswith("_"):
            setattr(SQSBackend, name, _receive(method) if name == "receive_message" else _locked(method))


if __name__ == "__main__":
    install()
    main()
