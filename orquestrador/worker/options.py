"""How a worker runs: the options every plugin it serves starts from."""

from __future__ import annotations

import random
from dataclasses import dataclass

from orquestrador import envelope as wire


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs; a plugin's own options (decorator) win over these defaults."""

    concurrency: int = 8
    max_tentativas: int = 5
    visibility_timeout: float = 30.0
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    timeout: float | None = None
    drain_timeout: float = 30.0
    fetch_timeout: float = 1.0
    max_message_bytes: int = wire.DEFAULT_MAX_BYTES
    results_queue: str = wire.DEFAULT_RESULTS_QUEUE

    def backoff(self, tentativa: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        # Capped exponent: an attempt count over 1,024 (a hostile or restamped one) would overflow.
        ceiling = min(self.backoff_max, self.backoff_base * (2.0 ** min(max(0, tentativa - 1), 64)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
