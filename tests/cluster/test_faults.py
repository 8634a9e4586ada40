"""Fault tests: an idempotent acks=all writer runs throughout; afterwards every acknowledged
record must be read back exactly once, in order. Failover times are printed, not asserted."""

import time

import pytest
from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

from kafka_checks import Writer, assert_no_loss, wait_until

PARTITIONS = 3


def report(what, seconds):
    print(f"\nFAILOVER {what}: {seconds:.2f}s" if seconds is not None else f"\nFAILOVER {what}: no ack")


def run_writer(c, topic, during):
    """Creates the topic, writes while `during(writer)` runs, then checks the data."""
    c.create_topic(topic, PARTITIONS, 3, {"min.insync.replicas": "2"})
    writer = Writer(c.bootstrap, topic, PARTITIONS).start()
    wait_until(lambda: writer.acknowledged() > 500, 30, "the first acknowledged writes")
    during(writer)
    acked_after_fault = writer.acknowledged()
    wait_until(lambda: writer.acknowledged() > acked_after_fault + 100, 60, "writes to resume after the fault")
    writer.stop()
    c.wait_isr(topic, 3)
    assert_no_loss(writer, c.bootstrap)
    return writer


def await_failover(c, writer, topic, victim, since, what):
    """Waits for partition 0 to get a leader other than `victim` and for the first record
    produced after `since` to be acknowledged; prints how long that took."""
    wait_until(lambda: c.leader(topic, 0) not in (-1, victim.id), 30, "a new leader")
    wait_until(lambda: writer.first_ack_after(0, since), 60, "an ack from the new leader")
    report(what, writer.first_ack_after(0, since) - since)


def test_kill_partition_leader(cluster, topic):
    c = cluster(combined=3)

    def fault(writer):
        victim = c.node(c.leader(topic, 0))
        killed_at = time.monotonic()
        victim.kill()
        await_failover(c, writer, topic, victim, killed_at, "kill -9 of a partition leader")
        c.restart(victim)

    run_writer(c, topic, fault)


def test_kill_active_controller(cluster, topic):
    c = cluster(combined=3)

    def fault(writer):
        active = c.active_controller()
        assert active is not None
        victim = c.node(active)
        led = [p for p, (leader, _, _) in c.partitions(topic).items() if leader == victim.id]
        killed_at = time.monotonic()
        victim.kill()
        wait_until(lambda: c.active_controller() not in (None, victim.id), 30, "a new active controller")
        print(f"\nnew active controller after {time.monotonic() - killed_at:.2f}s")
        for p in led:
            wait_until(lambda: writer.first_ack_after(p, killed_at), 60, f"an ack on partition {p}")
            report(f"kill -9 of the active controller (partition {p})", writer.first_ack_after(p, killed_at) - killed_at)
        c.restart(victim)

    run_writer(c, topic, fault)


def test_sigstop_leader_past_its_session(cluster, topic):
    c = cluster(combined=3)

    def fault(writer):
        victim = c.node(c.leader(topic, 0))
        victim.pause()
        stopped_at = time.monotonic()
        try:
            await_failover(c, writer, topic, victim, stopped_at, "SIGSTOP of a partition leader")
            time.sleep(2)
        finally:
            victim.resume()
        # The old leader wakes up believing it leads; nothing it accepts may be acknowledged
        # unless the ISR has it, which the read-back below checks.
        time.sleep(3)

    run_writer(c, topic, fault)


def test_a_dead_broker_is_fenced_without_waiting_for_its_session(cluster, topic):
    """With a ten-minute session, only the controller's probe can move leadership in time: a
    killed broker (its heartbeat connection closes) and a killed active controller (the new one
    probes every broker) are fenced at once, while a stopped broker, whose listener still
    accepts connections, keeps its partitions."""
    c = cluster(combined=3, overrides={"broker.session.timeout.ms": "600000"})
    c.create_topic(topic, 6, 3, {"min.insync.replicas": "2"})

    def led_by(node_id):
        return [p for p, (leader, _, _) in c.partitions(topic).items() if leader == node_id]

    active = c.active_controller()
    paused = c.node(next(n.id for n in c.nodes if n.id != active and led_by(n.id)))
    paused.pause()
    try:
        time.sleep(5)
        assert led_by(paused.id), "a stopped broker lost its partitions before its session ended"
    finally:
        paused.resume()
    for kill_active in (False, True):
        active = wait_until(c.active_controller, 30, "an active controller")
        victim = c.node(active if kill_active else next(n.id for n in c.nodes if n.id != active and led_by(n.id)))
        assert led_by(victim.id)
        victim.kill()
        wait_until(lambda: c.partitions(topic) and not led_by(victim.id), 30,
                   f"the partitions of killed node {victim.id} to move")
        c.restart(victim)
        c.wait_isr(topic, 3)


def test_readyz_follows_the_quorum(cluster):
    """/readyz answers 503 with the reason while a node has lost its quorum, and 200 again once
    the quorum is back, so Kubernetes stops routing to a node that cannot serve writes."""
    c = cluster(combined=3)
    survivor, *others = c.nodes
    assert all(n.readyz()[0] == 200 for n in c.nodes)
    for n in others:
        n.pause()
    try:
        wait_until(lambda: survivor.readyz()[0] == 503, 30, "/readyz to answer 503 without a quorum")
        status, body = survivor.readyz()
        print(f"\n/readyz without a quorum: {status} {body.strip()}")
        assert "quorum" in body or "heartbeat" in body, body
    finally:
        for n in others:
            n.resume()
    wait_until(lambda: all(n.readyz()[0] == 200 for n in c.nodes), 60, "every node Ready again")


def test_rolling_restart_under_load(cluster, topic):
    c = cluster(combined=3)

    def fault(writer):
        for node in list(c.nodes):
            if node.id == c.active_controller():
                continue
            node.stop()
            c.restart(node)
            c.wait_isr(topic, 3)
        active = c.node(c.active_controller())
        active.stop()
        c.restart(active)
        c.wait_isr(topic, 3)

    run_writer(c, topic, fault)


def test_writes_refused_below_min_insync_replicas(cluster, topic):
    c = cluster(controllers=3, brokers=3)
    c.create_topic(topic, 1, 3, {"min.insync.replicas": "2"})
    leader = c.leader(topic, 0)
    for n in c.brokers:
        if n.id != leader:
            n.kill()
    wait_until(lambda: len(c.partitions(topic)[0][2]) == 1, 30, "the ISR to shrink to the leader")
    # An idempotent producer retries the refusals until its timeout: nothing is acknowledged.
    outcomes = produce_some(c.bootstrap, topic, {"enable.idempotence": True, "message.timeout.ms": 5000})
    assert all(err is not None for err in outcomes), "a write was acknowledged below min.insync.replicas"
    # Without retries the refusal itself reaches the application.
    outcomes = produce_some(c.bootstrap, topic, {"retries": 0})
    assert all(err is not None and "NOT_ENOUGH_REPLICAS" in str(err) for err in outcomes), outcomes[:3]


def produce_some(bootstrap, topic, settings, count=20):
    """Produces `count` records with acks=all and returns each delivery error (None: acked)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **settings})
    outcomes = []
    for i in range(count):
        producer.produce(topic, value=str(i).encode(), on_delivery=lambda err, msg: outcomes.append(err))
    assert producer.flush(30) == 0
    assert len(outcomes) == count
    return outcomes


def test_metadata_changes_with_a_minority_of_controllers_down(cluster, topic):
    c = cluster(controllers=3, brokers=3)
    c.node(c.active_controller()).kill()
    wait_until(lambda: c.active_controller() is not None, 30, "a new active controller")
    c.create_topic(topic, 2, 3)
    admin = c.admin()
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=60)
    wait_until(lambda: len(c.partitions(topic)) == 4, 30, "four partitions")
    resource = ConfigResource(
        "topic", topic, incremental_configs=[ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)]
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=60)

    def retention():
        described = admin.describe_configs([ConfigResource("topic", topic)])
        return list(described.values())[0].result(timeout=60)["retention.ms"].value == "3600000"

    # Brokers apply committed metadata independently; every one gets there.
    wait_until(retention, 30, "the new retention.ms")
    with pytest.raises(KafkaException, match="already exists"):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=60)


def consume_group(bootstrap, topic, group, want, timeout=60):
    """Consumes up to `want` records in `group`, committing synchronously after each batch;
    returns {partition: [offsets]}."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    seen = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and sum(len(v) for v in seen.values()) < want:
            batch = [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
            for m in batch[: want - sum(len(v) for v in seen.values())]:
                seen.setdefault(m.partition(), []).append(m.offset())
                consumer.commit(message=m, asynchronous=False)
    finally:
        consumer.close()
    return seen


def test_group_offsets_survive_a_coordinator_crash(cluster, topic):
    c = cluster(combined=3)
    c.create_topic(topic, PARTITIONS, 3, {"min.insync.replicas": "2"})
    producer = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(600):
        producer.produce(topic, value=str(i).encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0
    group = f"g-{topic}"
    first = consume_group(c.bootstrap, topic, group, 300)
    assert sum(len(v) for v in first.values()) == 300

    admin = c.admin()
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = described.coordinator.id
    c.node(coordinator).kill()
    rest = consume_group(c.bootstrap, topic, group, 300)
    for p in range(PARTITIONS):
        before, after = first.get(p, []), rest.get(p, [])
        assert not set(before) & set(after), f"partition {p} re-read committed records"
        assert sorted(before + after) == list(range(200)), f"partition {p} skipped records"


def test_cut_a_leader_off_the_network_and_heal(cluster, topic):
    c = cluster(combined=3, netns=True)

    def fault(writer):
        victim = c.node(c.leader(topic, 0))
        victim.netns.cut()
        # Taken once the link is down: a record produced while `ip` ran could still be
        # acknowledged by the old leader, and the failover would measure as 0 s.
        cut_at = time.monotonic()
        try:
            await_failover(c, writer, topic, victim, cut_at, "network cut of a partition leader")
            time.sleep(3)
        finally:
            victim.netns.heal()

    run_writer(c, topic, fault)


def test_reassignment_moves_a_replica_under_load(cluster, topic):
    from kafka import KafkaAdminClient, TopicPartition as KafkaTopicPartition

    c = cluster(combined=3, brokers=1)

    def fault(writer):
        leader, replicas, _ = c.partitions(topic)[0]
        leaving = leader
        joining = next(n.id for n in c.brokers if n.id not in replicas)
        target = [r for r in replicas if r != leaving] + [joining]
        admin = KafkaAdminClient(bootstrap_servers=c.bootstrap)
        try:
            tp = KafkaTopicPartition(topic, 0)
            result = admin.alter_partition_reassignments({tp: target})
            assert result == {tp: None}, result
            wait_until(lambda: not admin.list_partition_reassignments([tp]), 60, "the move to finish")
        finally:
            admin.close()
        wait_until(lambda: sorted(c.partitions(topic)[0][1]) == sorted(target), 30, "the new replicas")
        moved = c.partitions(topic)[0]
        assert moved[0] in target, "leadership left the removed replica"
        wait_until(
            lambda: not (c.node(leaving).data_dir / f"{topic}-0").exists(), 30, "the old replica's log to go"
        )

    writer = run_writer(c, topic, fault)
    assert writer.acknowledged() > 0


def test_preferred_leaders_come_back(cluster, topic):
    c = cluster(combined=3, overrides={"leader.imbalance.check.interval.seconds": "2"})
    c.create_topic(topic, PARTITIONS, 3)
    preferred = {p: replicas[0] for p, (_, replicas, _) in c.partitions(topic).items()}
    victim = c.node(preferred[0])
    victim.stop()
    wait_until(lambda: c.leader(topic, 0) not in (-1, victim.id), 30, "leadership to move")
    c.restart(victim)
    # The controller hands leadership back on its own once the replica is in the ISR again.
    wait_until(
        lambda: all(leader == preferred[p] for p, (leader, _, _) in c.partitions(topic).items()),
        60,
        "preferred leaders",
    )
    admin = c.admin()
    results = admin.elect_leaders(ElectionType.PREFERRED, [ConfluentTopicPartition(topic, 0)]).result(timeout=30)
    error = results[ConfluentTopicPartition(topic, 0)]
    assert error is not None and error.code() == KafkaError.ELECTION_NOT_NEEDED, error
