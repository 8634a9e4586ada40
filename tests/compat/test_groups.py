"""Consumer groups with real clients: ownership, rebalances, session expiry, committed offsets
that survive consumer and broker restarts, and the admin views of groups."""

import asyncio
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

GROUP_BROKER = {"group.initial.rebalance.delay.ms": "0", "log.retention.check.interval.ms": "60000"}


@pytest.fixture(scope="module")
def gbroker(tmp_path_factory):
    from conftest import Broker

    b = Broker(tmp_path_factory.mktemp("groups") / "data", GROUP_BROKER).start()
    yield b
    b.stop()


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=20)


def fill(bootstrap, topic, count, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        p.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
    assert p.flush(20) == 0


def consumer(bootstrap, group, **extra):
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
        **extra,
    })


def poll_until(consumers, predicate, timeout=40):
    """Polls every consumer round-robin until predicate() holds; returns messages seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                seen.append(m)
        if predicate():
            return seen
    raise AssertionError("condition not reached in time")


def owned(consumers):
    return [sorted(tp.partition for tp in c.assignment()) for c in consumers]


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_share_six_partitions_then_one_leaves(gbroker, topic, assignor):
    create(gbroker.bootstrap, topic, 6)
    group = f"g-{uuid.uuid4().hex[:8]}"
    members = [consumer(gbroker.bootstrap, group, **{"partition.assignment.strategy": assignor})
               for _ in range(3)]
    for c in members:
        c.subscribe([topic])

    def balanced():
        o = owned(members)
        return all(len(p) == 2 for p in o) and sorted(sum(o, [])) == list(range(6))

    poll_until(members, balanced)
    leaving = members.pop()
    leaving.close()

    def rebalanced():
        o = owned(members)
        return sorted(sum(o, [])) == list(range(6)) and all(len(p) == 3 for p in o)

    poll_until(members, rebalanced)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    [desc] = admin.describe_consumer_groups([group]).values()
    d = desc.result(timeout=10)
    assert d.state == ConsumerGroupState.STABLE
    assert d.partition_assignor == assignor
    assert len(d.members) == 2
    assert sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions) == list(range(6))
    listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(timeout=10)
    assert group in [g.group_id for g in listed.valid]
    for c in members:
        c.close()


CRASHING_MEMBER = textwrap.dedent("""
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([sys.argv[3]])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        c.poll(0.2)
        if c.assignment():
            print("assigned", flush=True)
            break
    time.sleep(120)
""")


def test_killed_member_loses_partitions_after_session_timeout(gbroker, topic, tmp_path):
    create(gbroker.bootstrap, topic, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "member.py"
    script.write_text(CRASHING_MEMBER)
    survivor = consumer(gbroker.bootstrap, group)
    survivor.subscribe([topic])
    poll_until([survivor], lambda: len(survivor.assignment()) == 4)
    crashing = subprocess.Popen([sys.executable, str(script), gbroker.bootstrap, group, topic],
                                stdout=subprocess.PIPE, text=True)
    try:
        poll_until([survivor], lambda: len(survivor.assignment()) == 2, timeout=40)
        crashing.kill()
        crashing.wait()
        poll_until([survivor], lambda: len(survivor.assignment()) == 4, timeout=40)
    finally:
        crashing.kill()
        survivor.close()


def test_cooperative_sticky_rebalances_incrementally(gbroker, topic):
    create(gbroker.bootstrap, topic, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    revoked = []
    first = consumer(gbroker.bootstrap, group, **{"partition.assignment.strategy": "cooperative-sticky"})
    first.subscribe([topic], on_revoke=lambda c, ps: revoked.extend(p.partition for p in ps))
    poll_until([first], lambda: len(first.assignment()) == 4)
    before = set(tp.partition for tp in first.assignment())
    second = consumer(gbroker.bootstrap, group, **{"partition.assignment.strategy": "cooperative-sticky"})
    second.subscribe([topic])
    poll_until([first, second], lambda: len(first.assignment()) == 2 and len(second.assignment()) == 2)
    kept = set(tp.partition for tp in first.assignment())
    assert kept <= before
    assert len(revoked) == 2, "only the moved partitions are revoked"
    assert set(revoked) == before - kept
    first.close()
    second.close()


def test_committed_offsets_resume_after_consumer_and_broker_restart(own_broker, topic):
    b = own_broker(GROUP_BROKER).start()
    create(b.bootstrap, topic, 2)
    fill(b.bootstrap, topic, 100, 2)
    group = "resume-group"
    c = consumer(b.bootstrap, group)
    c.subscribe([topic])
    first = []
    deadline = time.monotonic() + 30
    while len(first) < 60 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            first.append(m)
    c.commit(offsets=[TopicPartition(topic, p, max([m.offset() for m in first if m.partition() == p], default=-1) + 1)
                      for p in range(2)], asynchronous=False)
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)])}
    c.close()

    def rest_after_restart():
        c2 = consumer(b.bootstrap, group)
        c2.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 100 - sum(committed.values()) and time.monotonic() < deadline:
            m = c2.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m)
        c2.close()
        return got

    resumed = rest_after_restart()
    assert len(resumed) == 100 - sum(committed.values())
    assert all(m.offset() >= committed[m.partition()] for m in resumed)

    b.kill()
    b.start()
    resumed = rest_after_restart()
    assert all(m.offset() >= committed[m.partition()] for m in resumed)
    assert len(resumed) == 100 - sum(committed.values())
    b.stop()


def test_kafka_python_and_aiokafka_groups(gbroker, topic):
    from kafka import KafkaConsumer

    create(gbroker.bootstrap, topic, 3)
    fill(gbroker.bootstrap, topic, 30, 3)
    kc = KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id="kp-group",
                       auto_offset_reset="earliest", consumer_timeout_ms=15000)
    got = []
    for m in kc:
        got.append(m)
        if len(got) == 30:
            break
    kc.commit()
    kc.close()
    assert len(got) == 30

    async def aio():
        from aiokafka import AIOKafkaConsumer

        c = AIOKafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id="aio-group",
                             auto_offset_reset="earliest")
        await c.start()
        seen = []
        try:
            deadline = time.monotonic() + 30
            while len(seen) < 30 and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for records in batch.values():
                    seen.extend(records)
            await c.commit()
        finally:
            await c.stop()
        return seen

    assert len(asyncio.run(aio())) == 30
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid]
    assert "kp-group" in groups and "aio-group" in groups


def test_delete_offsets_only_for_unsubscribed_topics(gbroker, topic):
    create(gbroker.bootstrap, topic, 2)
    other = f"{topic}-other"
    create(gbroker.bootstrap, other, 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = consumer(gbroker.bootstrap, group)
    c.subscribe([topic])
    poll_until([c], lambda: len(c.assignment()) == 2)
    c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(other, 0, 7)], asynchronous=False)
    # confluent-kafka's Python AdminClient has no OffsetDelete; kafka-python's does.
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupSubscribedToTopicError, NoError

    admin = KafkaAdminClient(bootstrap_servers=gbroker.bootstrap)
    result = admin.delete_group_offsets(group, [KTopicPartition(other, 0), KTopicPartition(topic, 0)])
    admin.close()
    assert result[KTopicPartition(other, 0)] is NoError
    assert result[KTopicPartition(topic, 0)] is GroupSubscribedToTopicError
    committed = {(tp.topic, tp.partition): tp.offset
                 for tp in c.committed([TopicPartition(topic, 0), TopicPartition(other, 0)], timeout=10)}
    assert committed[(topic, 0)] == 5
    assert committed[(other, 0)] < 0
    c.close()


def test_group_membership_survives_a_broker_restart(own_broker, topic):
    b = own_broker(GROUP_BROKER).start()
    create(b.bootstrap, topic, 2)
    group = "survivor-group"
    c = consumer(b.bootstrap, group, **{"session.timeout.ms": 10000})
    c.subscribe([topic])
    poll_until([c], lambda: len(c.assignment()) == 2)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    [f] = admin.describe_consumer_groups([group]).values()
    before = [m.member_id for m in f.result(timeout=10).members]
    b.kill()
    b.start()
    fill(b.bootstrap, topic, 10, 2)
    seen = []
    deadline = time.monotonic() + 20
    while len(seen) < 10 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            seen.append(m)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    [f] = admin.describe_consumer_groups([group]).values()
    after = f.result(timeout=10)
    assert len(seen) == 10
    assert [m.member_id for m in after.members] == before, "the member kept its identity"
    assert after.state == ConsumerGroupState.STABLE
    c.close()
    b.stop()


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(gbroker, topic):
    create(gbroker.bootstrap, topic, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    revoked = []
    a = consumer(gbroker.bootstrap, group, **{"group.instance.id": "static-a", "session.timeout.ms": 10000})
    a.subscribe([topic], on_revoke=lambda c, ps: revoked.extend(ps))
    b = consumer(gbroker.bootstrap, group, **{"group.instance.id": "static-b", "session.timeout.ms": 10000})
    b.subscribe([topic])
    poll_until([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
    b_partitions = sorted(tp.partition for tp in b.assignment())
    revoked.clear()
    b.close()  # a static member leaves no LeaveGroup behind
    b = consumer(gbroker.bootstrap, group, **{"group.instance.id": "static-b", "session.timeout.ms": 10000})
    b.subscribe([topic])
    poll_until([a, b], lambda: len(b.assignment()) == 2)
    assert sorted(tp.partition for tp in b.assignment()) == b_partitions
    assert len(a.assignment()) == 2
    assert revoked == [], "the other member saw no rebalance"
    a.close()
    b.close()

