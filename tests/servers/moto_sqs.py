"""moto's server (``python -m tests.servers.moto_sqs -H host -p port``) with one fix: an atomic receive.

moto serves each request on its own thread, and its ``receive_message`` checks that a message is
visible and then marks it received without a lock, so two consumers polling at the same moment
can both receive one message. SQS does not do that (a standard queue may, rarely, deliver a
copy; not every other concurrent receive), and the contract suite would count the race as
duplicates. Here every receive takes one lock for a non-waiting pass; a long poll repeats that
pass, waiting for new messages outside the lock, until its time is up.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from moto.server import main
from moto.sqs.models import SQSBackend

_RECEIVE = threading.Lock()
_receive = SQSBackend.receive_message


def receive_message(
    self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> Any:  # fmt: skip
    end = time.monotonic() + wait_seconds_timeout
    while True:
        with _RECEIVE:
            found = _receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        if found or time.monotonic() >= end:
            return found
        time.sleep(0.02)  # a waiting long poll holds no lock


if __name__ == "__main__":
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    main()
