"""Rack awareness: brokers report their `broker.rack`, and new partitions spread their replicas
over the racks, as Kafka's rack-aware assignment does."""

from confluent_kafka.admin import NewPartitions

RACKS = {2: "zone-a", 3: "zone-a", 4: "zone-b", 5: "zone-b"}


def test_replicas_spread_over_racks(cluster):
    # Node 1 is the controller; brokers 2 and 3 sit in one rack, 4 and 5 in the other. Without
    # rack awareness, round-robin over ids puts replicas [2, 3] of a partition in one rack.
    c = cluster(controllers=1, brokers=4, node_overrides=lambda i: {"broker.rack": RACKS[i]} if i in RACKS else {})
    admin = c.admin()  # the client must outlive its futures
    described = admin.describe_cluster(request_timeout=10).result(timeout=20)
    assert {n.id: n.rack for n in described.nodes} == RACKS

    c.create_topic("spread", partitions=8, replication=2)
    parts = c.partitions("spread")
    for p, (_, replicas, _) in parts.items():
        assert {RACKS[r] for r in replicas} == {"zone-a", "zone-b"}, f"partition {p}: {replicas}"
    assert {replicas[0] for _, replicas, _ in parts.values()} == set(RACKS), "leaders rotate over every broker"

    admin.create_partitions([NewPartitions("spread", 12)])["spread"].result(timeout=30)
    c.wait_isr("spread", 2)
    for p, (_, replicas, _) in c.partitions("spread").items():
        assert {RACKS[r] for r in replicas} == {"zone-a", "zone-b"}, f"partition {p}: {replicas}"
