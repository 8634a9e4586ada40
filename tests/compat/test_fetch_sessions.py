"""Incremental fetch sessions (KIP-227) on the wire: a full fetch opens a session, an
incremental one answers only partitions with news, and wrong epochs, unknown ids, forgotten
partitions and the final epoch behave as Kafka's broker does."""

import sys
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import wire  # noqa: E402
from broker import metric  # noqa: E402

FETCH = 1
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71


def produce(broker, topic, partition, value):
    delivered = []
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=value, partition=partition, on_delivery=lambda e, m: delivered.append(e))
    p.flush(20)
    assert delivered == [None]


def test_an_incremental_fetch_answers_only_partitions_with_news(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(20)
    produce(broker, topic, 0, b"first")
    with wire.Connection(broker.port) as conn:
        def fetch(partitions, session_id, epoch, forgotten=()):
            return wire.fetch_v7_answer(conn.request(FETCH, 7, wire.fetch_v7(
                partitions, session_id, epoch, forgotten)))

        error, session, answer = fetch([(topic, p, 0) for p in range(3)], 0, 0)
        assert error == 0 and session != 0
        assert sorted(answer) == [(topic, 0), (topic, 1), (topic, 2)]
        assert answer[(topic, 0)][0] == 0 and b"first" in answer[(topic, 0)][2]
        assert metric(broker, "strom_fetch_sessions") >= 1

        # Partition 0 moves past its record: nothing is news.
        assert fetch([(topic, 0, 1)], session, 1) == (0, session, {})

        produce(broker, topic, 2, b"second")
        error, _, answer = fetch([], session, 2)
        assert error == 0 and list(answer) == [(topic, 2)]
        assert b"second" in answer[(topic, 2)][2]

        assert fetch([], session, 9)[0] == INVALID_FETCH_SESSION_EPOCH
        assert fetch([], session + 1, 1)[0] == FETCH_SESSION_ID_NOT_FOUND

        # Partition 2 leaves the session, so its next record is not answered.
        produce(broker, topic, 2, b"third")
        assert fetch([], session, 3, forgotten=[(topic, 2)]) == (0, session, {})
        produce(broker, topic, 1, b"fourth")
        error, _, answer = fetch([], session, 4)
        assert list(answer) == [(topic, 1)]

        # The final epoch closes the session and answers in full.
        error, closed, answer = fetch([(topic, 0, 0)], session, -1)
        assert (error, closed) == (0, 0) and list(answer) == [(topic, 0)]
        assert fetch([], session, 5)[0] == FETCH_SESSION_ID_NOT_FOUND


def test_a_waiting_fetch_wakes_when_a_record_arrives(broker, topic):
    """A fetch that waits for data (max_wait_ms 25 s, longer than the socket's 15 s timeout)
    is answered when a record arrives, in a new session and in an incremental fetch."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(20)
    with wire.Connection(broker.port, timeout=15) as conn:
        waiting = conn.send(FETCH, 7, wire.fetch_v7([(topic, 0, 0)], 0, 0, max_wait_ms=25000))
        produce(broker, topic, 0, b"wake up")
        error, session, answer = wire.fetch_v7_answer(conn.receive(waiting))
        assert error == 0 and session != 0 and b"wake up" in answer[(topic, 0)][2]

        waiting = conn.send(FETCH, 7, wire.fetch_v7([(topic, 0, 1)], session, 1, max_wait_ms=25000))
        produce(broker, topic, 0, b"again")
        error, _, answer = wire.fetch_v7_answer(conn.receive(waiting))
        assert error == 0 and b"again" in answer[(topic, 0)][2]
