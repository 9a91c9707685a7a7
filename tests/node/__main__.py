"""``python -m tests.node``: install Node BullMQ and Bull Board for the interop tests (see the package)."""

from tests.node import node_modules

print(f"node modules for the interop tests: {node_modules()}")
