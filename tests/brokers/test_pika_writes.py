"""Frames buffered by pika leave in one send(), same bytes, same order; partial sends still work."""

from __future__ import annotations

from collections import deque

from pika.adapters.utils import io_services_utils as io

from orquestrador.brokers.rabbitmq import pika_writes


class Socket:
    """Records each send(); accepts at most ``limit`` bytes per call, like a full kernel buffer."""

    def __init__(self, limit: int | None = None) -> None:
        self.calls: list[bytes] = []
        self.limit = limit

    def send(self, data: bytes) -> int:
        taken = bytes(data[: self.limit]) if self.limit else bytes(data)
        self.calls.append(taken)
        return len(taken)


def _transport(sock: Socket, frames: list[bytes]) -> io._AsyncPlaintextTransport:
    transport = object.__new__(io._AsyncPlaintextTransport)
    transport._sock = sock
    transport._tx_buffers = deque(frames)
    transport._tx_buffered_byte_count = sum(map(len, frames))
    return transport


def test_buffered_frames_leave_in_one_send_in_order():
    assert pika_writes.install() and pika_writes.install()  # idempotent
    frames = [b"method-%d|" % i for i in range(50)] + [b"body" * 10]
    sock = Socket()
    transport = _transport(sock, frames)

    transport._produce()

    assert len(sock.calls) == 1
    assert sock.calls[0] == b"".join(frames)
    assert not transport._tx_buffers and transport._tx_buffered_byte_count == 0


def test_a_partial_send_keeps_the_rest_in_order():
    pika_writes.install()
    frames = [bytes([65 + i]) * 100 for i in range(10)]
    sock = Socket(limit=64)
    transport = _transport(sock, frames)

    transport._produce()  # pika keeps sending until the buffer is empty

    assert b"".join(sock.calls) == b"".join(frames)
    assert transport._tx_buffered_byte_count == 0


def test_importing_the_adapter_patches_nothing_until_it_connects():
    import subprocess
    import sys

    code = (
        "from pika.adapters.utils import io_services_utils as io\n"
        "from pika import spec\n"
        "import orquestrador.brokers.rabbitmq as rabbitmq\n"
        "patched = lambda: (getattr(io._AsyncTransportBase._produce, '_orq_coalesced', False),"
        " getattr(spec.BasicProperties.decode, '_orq_guarded', False))\n"
        "print(patched())\n"
        "rabbitmq.connection.prepare_pika(); rabbitmq.connection.prepare_pika()\n"
        "print(patched())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.split("\n")[:2] == ["(False, False)", "(True, True)"], run.stderr
