"""Client quotas in force: a producer and a consumer held to their byte rates by the
throttle time the broker answers with (librdkafka waits it out) and by the broker muting their
connections; request-time quotas; connection-rate quotas per address. Quotas are set with
AlterClientQuotas, as kafka-configs sets them."""

import threading
import time

from confluent_kafka import Consumer, Producer
from kafka.protocol.metadata import MetadataRequest

from broker import metric
from kafka_checks import wait_until
from raw import Raw, alter_client_quotas
from wire import Connection

RATE = 1_000_000  # bytes a second
RUN = 40  # seconds each client runs
SETTLED = 12  # seconds after which the rate is measured: the quota's 11 one-second windows
RECORD = b"q" * 1000


def set_quotas(broker, entries):
    with Raw(broker.bootstrap) as r:
        resp = alter_client_quotas(r, entries)
    assert [e.error_code for e in resp.entries] == [0] * len(entries), resp


def slope(points):
    """Least squares bytes per second through (seconds, cumulative bytes): the rate over the
    stretch, not swayed by where its first and last throttled burst fall."""
    n = len(points)
    assert n > 10, points
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def produce_for(bootstrap, topic, client_id, seconds):
    """Produces as fast as the broker lets `client_id`; (seconds since start, bytes acked so far)."""
    # A short queue, so that what is left to flush after the run is sent in seconds.
    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
                  "queue.buffering.max.messages": 2000})
    acked, total = [], [0]
    t0 = time.monotonic()

    def done(err, msg):
        if err is None:
            total[0] += len(msg.value())
            acked.append((time.monotonic() - t0, total[0]))

    while time.monotonic() - t0 < seconds:
        try:
            p.produce(topic, RECORD, callback=done)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    assert p.flush(60) == 0
    return acked


def consume_for(bootstrap, topic, client_id, seconds):
    """Consumes as fast as the broker lets `client_id`; (seconds since start, bytes so far)."""
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id, "group.id": f"g-{client_id}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, total = [], 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                total += len(m.value())
                got.append((time.monotonic() - t0, total))
    finally:
        c.close()
    return got


def test_producer_and_consumer_rates_settle_at_their_quotas(own_broker, topic):
    b = own_broker().start()
    preload = f"{topic}-preload"
    # Enough for the consumer's whole run, written by a client without a quota.
    p = Producer({"bootstrap.servers": b.bootstrap, "client.id": "loader", "linger.ms": 20})
    for _ in range(RATE * (RUN + 20) // len(RECORD)):
        while True:
            try:
                p.produce(preload, RECORD)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    set_quotas(b, [([("client-id", "slow-producer")], {"producer_byte_rate": RATE}),
                   ([("client-id", "slow-consumer")], {"consumer_byte_rate": RATE})])

    found = {}
    consumer = threading.Thread(
        target=lambda: found.update(consumed=consume_for(b.bootstrap, preload, "slow-consumer", RUN)))
    consumer.start()
    produced = produce_for(b.bootstrap, topic, "slow-producer", RUN)
    consumer.join(RUN + 60)
    assert not consumer.is_alive()

    for name, points in (("produce", produced), ("consume", found["consumed"])):
        rate = slope([(t, n) for t, n in points if SETTLED <= t <= RUN])
        print(f"{name} at a quota of {RATE} B/s: {rate:.0f} B/s of record values from {SETTLED} s to {RUN} s")
        assert 0.9 * RATE <= rate <= 1.1 * RATE, (name, rate)
        assert metric(b, "strom_quota_throttle_seconds_total", quota=name.replace("consume", "fetch")) > 0


REQUESTS = 200


def metadata_waits(b, client, stop_at_first_wait):
    """throttle_time_ms of Metadata requests from `client`, up to the first nonzero one."""
    waits = []
    with Raw(b.bootstrap, client_id=client) as r:
        for _ in range(REQUESTS):
            waits.append(r.request(MetadataRequest, 4, topics=None, allow_auto_topic_creation=False).throttle_time_ms)
            if stop_at_first_wait and waits[-1]:
                break
    return waits


def test_request_time_quota_throttles_only_its_client(own_broker):
    b = own_broker().start()
    set_quotas(b, [([("client-id", "busy")], {"request_percentage": 0.001})])
    # A thousandth of a percent of a thread is 0.1 ms in 10 s: the busy client is soon over
    # it and told to wait, for at most one quota window.
    busy = metadata_waits(b, "busy", True)
    assert 0 < busy[-1] <= 1000, busy
    assert metadata_waits(b, "idle", False) == [0] * REQUESTS
    assert metric(b, "strom_quota_throttled_responses_total", quota="request") > 0


def served(b):
    """Whether a new connection is answered (ApiVersions v0) before the broker closes it."""
    try:
        with Connection(b.port, timeout=5) as conn:
            conn.request(18, 0, b"")
            return True
    except (OSError, ConnectionError, EOFError):
        return False


def test_connection_rate_quota_per_address(own_broker):
    b = own_broker().start()
    set_quotas(b, [([("ip", "127.0.0.1")], {"connection_creation_rate": 1})])
    # One a second over a span counted as at least 10 s: about ten connections pass at once,
    # then each further one is held unserved and closed.
    outcomes = [served(b) for _ in range(20)]
    assert outcomes[:5] == [True] * 5, outcomes
    assert not all(outcomes[5:]), outcomes
    assert metric(b, "strom_connections_closed_total", reason="connection_rate") > 0
    # Refused connections are not counted: once the rate falls the address is served again.
    wait_until(lambda: served(b), 30, "127.0.0.1 to be served again", interval=1)
    set_quotas(b, [([("ip", "127.0.0.1")], {"connection_creation_rate": None})])
    assert all(served(b) for _ in range(20))
