"""An in-process broker with the full delivery contract, for fast unit tests of the core and of
users' own plugins. ``memory://NAME`` shares one space per NAME inside a process; nothing
crosses processes and nothing survives the process. Never a stand-in in broker tests.

It polls instead of using asyncio primitives, so one space can be shared by code running on
different event loops (the sync facade's loop thread and a test's loop).

Files: :mod:`.broker` (queues, publishing, inspection, events), :mod:`.consumer` (leased
deliveries), :mod:`.space` (where messages live: public, for brokers built on top of it).
"""

from orquestrador.brokers.memory.broker import MemoryBroker
from orquestrador.brokers.memory.consumer import MemoryConsumer, MemoryDelivery
from orquestrador.brokers.memory.space import Entry, Space, Store, space

__all__ = ["Entry", "MemoryBroker", "MemoryConsumer", "MemoryDelivery", "Space", "Store", "space"]
