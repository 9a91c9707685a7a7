"""``python -m tests.servers``: fetch what the tests' servers need ahead of the tests (Kafka's jars;
the other servers are programs from Debian's packages, see .ci/install)."""

from tests.servers.kafka_node import main

raise SystemExit(main())
