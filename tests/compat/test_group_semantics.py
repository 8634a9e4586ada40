"""Consumer-group answers that clients rely on, as Kafka gives them: static-member fencing,
commits during a rebalance, admin offset changes only on groups without members, authorized
operations, and topic deletions applied once. Each is checked with a real client, and the
exact codes on the wire with raw frames (tests/lib/wire.py)."""

import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, Producer, TopicPartition, TopicCollection)
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import wire  # noqa: E402
from kafka_checks import wait_until  # noqa: E402

FENCED_INSTANCE_ID = 82
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27


@pytest.fixture(scope="module")
def gbroker(tmp_path_factory):
    from conftest import Broker
    b = Broker(tmp_path_factory.mktemp("groups-semantics") / "data",
               {"group.initial.rebalance.delay.ms": "0", "offsets.topic.num.partitions": "3"}).start()
    yield b
    b.stop()


def make_topic(broker, name, partitions=3):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        p.produce(name, value=b"v%d" % i, partition=i % partitions)
    p.flush(30)


def consumer(broker, group, **extra):
    errors = []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                  "error_cb": errors.append, **extra})
    return c, errors


def is_fatal(error):
    return error.fatal() or error.code() == KafkaError._FATAL


def poll_until_assigned(c, partitions, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.poll(0.2)
        if len(c.assignment()) == partitions:
            return
    raise AssertionError(f"no assignment of {partitions} partitions within {timeout}s: {c.assignment()}")


def test_a_second_consumer_with_the_same_instance_id_fences_the_first(gbroker, topic):
    make_topic(gbroker, topic)
    group = f"static-{uuid.uuid4().hex[:8]}"
    a, a_errors = consumer(gbroker, group, **{"group.instance.id": "inst1"})
    a.subscribe([topic])
    poll_until_assigned(a, 3)
    b, b_errors = consumer(gbroker, group, **{"group.instance.id": "inst1"})
    b.subscribe([topic])
    a_fatal = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (a_fatal and len(b.assignment()) == 3):
        b.poll(0.1)
        try:
            msg = a.poll(0.1)
            if msg is not None and msg.error() and is_fatal(msg.error()):
                a_fatal = msg.error()
        except KafkaException as e:
            a_fatal = e.args[0]
        a_fatal = a_fatal or next((e for e in a_errors if is_fatal(e)), None)
    assert a_fatal is not None, f"the older consumer was not fenced: {a_errors}"
    assert "static consumer fenced" in a_fatal.str().lower(), a_fatal
    assert len(b.assignment()) == 3, "the newer consumer owns every partition"
    assert not any(is_fatal(e) for e in b_errors), b_errors
    b.close()


def test_fencing_codes_on_the_wire(gbroker, topic):
    make_topic(gbroker, topic)
    group = f"wire-static-{uuid.uuid4().hex[:8]}"
    with wire.Connection(gbroker.port) as conn:
        error, generation, old_id, leader, _ = wire.join_group_v5_answer(
            conn.request(11, 5, wire.join_group_v5(group, "", "inst1")))
        assert (error, generation, leader) == (0, 1, old_id)
        assert wire.first_error_code(conn.request(14, 3, wire.sync_group_v3(
            group, 1, old_id, "inst1", [(old_id, b"")]))) == 0
        # A restart with the same instance id takes the place; the old id is fenced.
        error, generation, new_id, _, _ = wire.join_group_v5_answer(
            conn.request(11, 5, wire.join_group_v5(group, "", "inst1")))
        assert (error, generation) == (0, 1) and new_id != old_id
        assert wire.first_error_code(conn.request(12, 3, wire.heartbeat_v3(group, 1, old_id, "inst1"))) == FENCED_INSTANCE_ID
        assert wire.first_error_code(conn.request(14, 3, wire.sync_group_v3(group, 1, old_id, "inst1"))) == FENCED_INSTANCE_ID
        assert wire.offset_commit_v7_errors(conn.request(8, 7, wire.offset_commit_v7(
            group, 1, old_id, topic, 0, 5, "inst1"))) == [FENCED_INSTANCE_ID]
        assert wire.first_error_code(conn.request(12, 3, wire.heartbeat_v3(group, 1, old_id))) == UNKNOWN_MEMBER_ID
        assert wire.first_error_code(conn.request(12, 3, wire.heartbeat_v3(group, 1, new_id, "inst1"))) == 0


def test_commits_during_a_rebalance_follow_the_generation(gbroker, topic):
    """A member of the current generation commits while others join (PreparingRebalance); a
    stale generation gets ILLEGAL_GENERATION; nobody commits in CompletingRebalance."""
    make_topic(gbroker, topic)
    group = f"wire-commit-{uuid.uuid4().hex[:8]}"
    with wire.Connection(gbroker.port) as a, wire.Connection(gbroker.port) as b:
        join = a.request(11, 5, wire.join_group_v5(group, ""))
        member_required, _, a_id, _, _ = wire.join_group_v5_answer(join)
        assert member_required == 79
        error, generation, _, _, _ = wire.join_group_v5_answer(a.request(11, 5, wire.join_group_v5(group, a_id)))
        assert (error, generation) == (0, 1)
        commit = lambda gen: wire.offset_commit_v7_errors(a.request(8, 7, wire.offset_commit_v7(group, gen, a_id, topic, 0, 3)))  # noqa: E731
        assert commit(1) == [REBALANCE_IN_PROGRESS], "CompletingRebalance"
        assert wire.first_error_code(a.request(14, 3, wire.sync_group_v3(group, 1, a_id, None, [(a_id, b"")]))) == 0
        # b joins; its JoinGroup waits on the broker for a, which does not rejoin.
        _, _, b_id, _, _ = wire.join_group_v5_answer(b.request(11, 5, wire.join_group_v5(group, "")))
        b.send(11, 5, wire.join_group_v5(group, b_id))
        wait_until(lambda: describe_state(gbroker, group) == ConsumerGroupState.PREPARING_REBALANCING, 10,
                   "the group to prepare a rebalance")
        assert commit(1) == [0], "a current member commits during PreparingRebalance"
        assert commit(0) == [ILLEGAL_GENERATION]
        assert wire.first_error_code(a.request(12, 3, wire.heartbeat_v3(group, 1, a_id))) == REBALANCE_IN_PROGRESS


def describe_state(broker, group):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    return admin.describe_consumer_groups([group])[group].result(10).state


def test_a_real_consumer_commits_while_another_joins(gbroker, topic):
    """The report: consumer A (manual commits) owns the partitions, B subscribes, and A's
    synchronous commit during the rebalance must succeed rather than get REBALANCE_IN_PROGRESS."""
    make_topic(gbroker, topic, partitions=2)
    group = f"commit-{uuid.uuid4().hex[:8]}"
    a, _ = consumer(gbroker, group)
    a.subscribe([topic])
    poll_until_assigned(a, 2)
    b, _ = consumer(gbroker, group)
    b.subscribe([topic])
    stop = threading.Event()
    polling = threading.Thread(target=lambda: [b.poll(0.1) for _ in iter(stop.is_set, True)], daemon=True)
    polling.start()
    try:
        # A does not poll, so it does not rejoin: the group stays in PreparingRebalance.
        wait_until(lambda: describe_state(gbroker, group) == ConsumerGroupState.PREPARING_REBALANCING, 15,
                   "the group to prepare a rebalance")
        for attempt in range(3):
            committed = a.commit(offsets=[TopicPartition(topic, 0, 5 + attempt)], asynchronous=False)
            assert committed[0].error is None, committed[0].error
    finally:
        stop.set()
        polling.join(5)
        b.close()
        a.close()


def test_admin_offset_changes_need_a_group_without_members(gbroker, topic):
    make_topic(gbroker, topic)
    group = f"admin-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    c, _ = consumer(gbroker, group)
    c.subscribe([topic])
    poll_until_assigned(c, 3)
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 7)])]
    with pytest.raises(KafkaException) as refused:
        result = admin.alter_consumer_group_offsets(request)[group].result(15)
        for tp in result.topic_partitions:
            if tp.error:
                raise KafkaException(tp.error)
    assert refused.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID, refused.value
    c.close()
    wait_until(lambda: describe_state(gbroker, group) == ConsumerGroupState.EMPTY, 15, "the group to be empty")
    result = admin.alter_consumer_group_offsets(request)[group].result(15)
    assert [tp.error for tp in result.topic_partitions] == [None]
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    assert listed[group].result(15).topic_partitions[0].offset == 7


def test_authorized_operations_list_kafkas_sets(gbroker, topic):
    make_topic(gbroker, topic)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    described = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(15)
    assert {op.name for op in described.authorized_operations} == {
        "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
    cluster = admin.describe_cluster(include_authorized_operations=True).result(15)
    assert {op.name for op in cluster.authorized_operations} == {
        "CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE"}
    without = admin.describe_topics(TopicCollection([topic]))[topic].result(15)
    assert without.authorized_operations is None


def test_a_topic_deletion_is_applied_once(own_broker):
    broker = own_broker().start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    names = [f"gone-{i}-{uuid.uuid4().hex[:6]}" for i in range(10)]
    for name in names:
        admin.create_topics([NewTopic(name, 4, 1)])[name].result(30)
    for name in names:
        admin.delete_topics([name])[name].result(30)
    wait_until(lambda: not any((broker.data_dir / f"{n}-0").exists() for n in names), 30,
               "the deleted topics' directories to go")
    log = broker.log_path.read_text()
    assert "could not delete log directory" not in log
    assert "No such file or directory" not in log
