"""ListOffsets answers the leader epochs Kafka gives across a change of leader: the epoch the
found record's batch was written in for a timestamp and for the max timestamp, the epoch cache's
for the log start, and the current leader's for the latest offset."""

import time

from kafka_checks import wait_until
from raw import Raw, list_offsets, produce_ok

EARLIEST, LATEST, MAX_TIMESTAMP = -2, -1, -3


def answer(r, topic, timestamp):
    """(offset, timestamp, leader epoch) of a ListOffsets v7 for partition 0; asserts no error."""
    p = list_offsets(r, topic, timestamp).topics[0].partitions[0]
    assert p.error_code == 0, f"ListOffsets {timestamp} answered error {p.error_code}"
    return p.offset, p.timestamp, p.leader_epoch


def new_leader(c, topic, old):
    """Partition 0's leader when it is neither `old` nor none; else None."""
    leader = c.leader(topic, 0)
    return leader if leader not in (old, -1) else None


def test_list_offsets_answers_the_epoch_each_record_was_written_in(cluster, topic):
    # Recent timestamps, which retention keeps.
    base = int(time.time() * 1000) - 60_000
    c = cluster(combined=3)
    c.create_topic(topic, 1, 3)
    first = c.leader(topic, 0)
    with Raw(c.node(first).address) as r:
        produce_ok(r, topic, [b"a", b"b"], timestamps=[base, base + 1])
        old_epoch = answer(r, topic, LATEST)[2]
    c.node(first).kill()
    second = wait_until(lambda: new_leader(c, topic, first), 60, "a new leader")
    with Raw(c.node(second).address) as r:
        produce_ok(r, topic, [b"c"], timestamps=[base + 1000])
        new_epoch = answer(r, topic, LATEST)[2]
        assert new_epoch > old_epoch
        assert answer(r, topic, LATEST)[0] == 3
        assert answer(r, topic, base + 1) == (1, base + 1, old_epoch)
        assert answer(r, topic, base + 500) == (2, base + 1000, new_epoch)
        assert answer(r, topic, MAX_TIMESTAMP) == (2, base + 1000, new_epoch)
        assert answer(r, topic, EARLIEST) == (0, -1, old_epoch)
        assert answer(r, topic, base + 2000) == (-1, -1, -1)
