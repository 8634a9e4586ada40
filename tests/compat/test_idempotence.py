"""Idempotent producer: a connection cut after the broker got a Produce request (but before
the client got the answer) makes the client retry, and the log still holds every record exactly
once, in order."""

import socket
import struct
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import free_port
from wire import read_exactly

PRODUCE = 0


class DroppingProxy:
    """Forwards loopback TCP to the broker; every `every`-th Produce request is delivered to the
    broker and then both sides of that connection are closed before the response returns."""

    def __init__(self, upstream_port, every, port):
        self.upstream_port = upstream_port
        self.every = every
        self.port = port
        self.produce_requests = 0
        self.drops = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            cut = threading.Event()
            threading.Thread(target=self._client_to_broker, args=(client, upstream, cut), daemon=True).start()
            threading.Thread(target=self._broker_to_client, args=(upstream, client, cut), daemon=True).start()

    def _client_to_broker(self, client, upstream, cut):
        try:
            while True:
                size = read_exactly(client, 4)
                body = read_exactly(client, struct.unpack(">i", size)[0])
                drop = False
                if struct.unpack(">h", body[:2])[0] == PRODUCE:
                    with self.lock:
                        self.produce_requests += 1
                        drop = self.produce_requests % self.every == 0
                        self.drops += drop
                if drop:
                    cut.set()  # no response on this connection reaches the client any more
                upstream.sendall(size + body)
                if drop:
                    time.sleep(0.05)  # let the broker append before the cut
                    raise ConnectionError("dropped on purpose")
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    @staticmethod
    def _broker_to_client(upstream, client, cut):
        try:
            while True:
                data = upstream.recv(65536)
                if not data or cut.is_set():
                    break
                client.sendall(data)
        except OSError:
            pass

    def close(self):
        self.stopped.set()
        self.listener.close()


def test_retries_after_cut_connections_write_each_record_once(own_broker, topic):
    proxy_port = free_port()
    b = own_broker({"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"})
    proxy = DroppingProxy(b.port, every=7, port=proxy_port)
    b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=20)
        p = Producer({
            "bootstrap.servers": f"127.0.0.1:{proxy_port}", "enable.idempotence": True,
            "acks": "all", "linger.ms": 2, "batch.num.messages": 50,
            "max.in.flight.requests.per.connection": 5, "retry.backoff.ms": 50,
            "message.timeout.ms": 60000,
        })
        errors = []
        count = 3000
        for i in range(count):
            p.produce(topic, value=str(i).encode(), partition=i % 2,
                      on_delivery=lambda e, m: errors.append(e) if e else None)
            if i % 200 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        assert errors == []
        assert proxy.drops > 0, "the proxy should have cut some connections"

        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "check", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
        got = {0: [], 1: []}
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got[m.partition()].append(int(m.value()))
        time.sleep(1)
        while (m := c.poll(0.5)) is not None:
            if m.error() is None:
                got[m.partition()].append(int(m.value()))
        c.close()
        assert got[0] == list(range(0, count, 2)), "partition 0: each record once, in order"
        assert got[1] == list(range(1, count, 2)), "partition 1: each record once, in order"
    finally:
        proxy.close()
        b.stop()
