"""One partition's progress, so a consumer commits only what is finished.

Kafka keeps one committed offset per partition and consumer group; records below it are done.
With several jobs of a partition in flight at once, finishing out of order, the consumer commits
the lowest offset not finished yet, and records in the commit's metadata what the offset alone
cannot say: the highest offset handed out to a handler and which ones above the commit are
finished. The next owner of the partition (after a crash or a rebalance) reads it back: a record
at or below that mark and not finished was handed out before, so it is a redelivery and counts
an attempt (:mod:`orquestrador.brokers.support.attempts`); a finished one is skipped.

Metadata: ``orq1 <owner> <seq> <handed - offset> <finished ranges relative to offset>``, under
Kafka's default 4 KiB limit (finished offsets beyond it are left out: at worst they run again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAGIC = "orq1"
MAX_METADATA = 3000


@dataclass
class Committed:
    """What the group committed for a partition: offset (None: nothing yet) and our metadata."""

    offset: int | None
    metadata: str = ""

    @property
    def handed(self) -> int:
        """Highest offset an earlier owner handed out (below ``offset``: none)."""
        parts = self.metadata.split(" ")
        if self.offset is None or len(parts) < 4 or parts[0] != MAGIC or not parts[3].isdigit():
            return (self.offset or 0) - 1
        return self.offset + int(parts[3])

    @property
    def finished(self) -> set[int]:
        parts = self.metadata.split(" ")
        if self.offset is None or len(parts) < 5 or parts[0] != MAGIC:
            return set()
        return {self.offset + n for n in _parse_ranges(parts[4])}


@dataclass
class Ledger:
    """Offsets of one partition seen by this consumer since it was assigned (see the module)."""

    prior: Committed
    owner: str
    unfinished: set[int] = field(default_factory=set)  # held by handlers, or being copied
    finished: set[int] = field(default_factory=set)  # at or above the commit point
    position: int | None = None  # the next offset to expect
    handed: int = -1
    seq: int = 0
    last: tuple[int, str] | None = None  # what this consumer committed last
    lost: bool = False  # the partition went to another consumer: settling here is useless

    def __post_init__(self) -> None:
        self._committed_state: tuple[int, int, frozenset[int]] | None = None
        self._proposed: tuple[int, int, frozenset[int]] | None = None
        self.position = self.prior.offset
        self.handed = self.prior.handed
        self.delivered = self.prior.handed  # highest offset given to a handler (handed: marked)
        self._prior_finished = self.prior.finished

    def classify(self, offset: int) -> str:
        """``skip`` (seen, finished), ``again`` (an earlier owner handed it out) or ``new``."""
        if offset in self.unfinished or offset in self.finished:
            return "skip"
        point = self.point()
        if point is not None and offset < point:
            return "skip"
        if offset in self._prior_finished:
            self.see(offset)
            self.finish(offset)
            return "skip"
        self.see(offset)
        prior = self.prior.offset
        return "again" if prior is not None and prior <= offset <= self.prior.handed else "new"

    def see(self, offset: int) -> None:
        self.unfinished.add(offset)
        if self.position is None or offset >= self.position:
            self.position = offset + 1

    def forget(self, offset: int) -> None:
        """Fetched but never handed out (its hand-out failed): it will be fetched again."""
        self.unfinished.discard(offset)
        if self.position is not None and offset < self.position:
            self.position = offset

    def hand_out(self, offset: int) -> None:
        """Mark ``offset`` handed out (committed before it is, so a crash counts the attempt)."""
        self.handed = max(self.handed, offset)

    def unmark(self) -> None:
        """Marked offsets nobody was given (a prefetch handed back) are not handed out after all."""
        self.handed = max(self.prior.handed, self.delivered)

    def finish(self, offset: int) -> None:
        if offset in self.unfinished:
            self.unfinished.discard(offset)
            self.finished.add(offset)

    @property
    def busy(self) -> bool:
        return bool(self.unfinished)

    def point(self) -> int | None:
        """The offset to commit: the lowest not finished (or the next to come)."""
        if self.unfinished:
            return min(self.unfinished)
        return self.position

    def proposal(self) -> tuple[int, str] | None:
        """``(offset, metadata)`` to commit if anything changed since the last commit, else None."""
        point = self.point()
        if point is None:
            return None
        self.finished = {o for o in self.finished if o >= point}
        state = (point, self.handed, frozenset(self.finished))
        if state == self._committed_state:
            return None
        text = f"{MAGIC} {self.owner} {self.seq + 1}"
        if self.handed >= point:
            text += f" {self.handed - point}"
            ranges = _ranges(sorted(o - point for o in self.finished if o <= self.handed))
            if len(text) + len(ranges) + 1 <= MAX_METADATA:
                text += " " + ranges
        self._proposed = state
        return point, text

    def confirm(self, committed: tuple[int, str]) -> None:
        """The group holds ``committed`` (the last :meth:`proposal`) now."""
        self.seq += 1
        self.last = committed
        self._committed_state = self._proposed

    def ours(self, committed: Committed) -> bool:
        """Whether the group's commit is still this consumer's last one (nobody owned it since)."""
        return (
            self.last is not None and committed.offset == self.last[0] and committed.metadata == self.last[1]
        )

    def in_flight(self) -> int:
        return len(self.unfinished)


def _ranges(numbers: list[int]) -> str:
    out: list[str] = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif prev is not None and n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out) or "-"


def _parse_ranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            a, b = int(low), int(high or low)
            if 0 <= b - a <= 100_000:
                out.update(range(a, b + 1))
    return out
