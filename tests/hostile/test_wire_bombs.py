"""Bombs on the wire: requests whose numbers claim far more than their bytes hold. A partition
count of 2^31-1 in CreateTopics is a valid request the broker must refuse by policy; an array
count or a string length of 2^31-1 with a few bytes behind it is a malformed frame that must
close its own connection only, counted in strom_malformed_requests_total, without the broker
reserving memory for what the number claims."""

import struct

import pytest

import wire
from health import answers_api_versions, closed_without_answer, connect, malformed

# Every case here shares one broker with the default settings, so a bomb that harmed it also
# shows in the next case's health check. Measured: ~10 MB after start, peaks within ~2 MB of
# it. 64 MB above the baseline is room for allocator noise and the client round trip, and far
# below what honouring any of these numbers would take (2^31 elements or bytes).
RSS_BUDGET_MB = 64
HUGE = 2**31 - 1
POLICY_VIOLATION = 44
UNKNOWN_TOPIC_OR_PARTITION = 3


def test_create_topics_with_2_31_partitions_is_refused_by_policy(module_broker):
    broker, health = module_broker
    before = malformed(broker)
    with wire.Connection(broker.port) as conn:
        names = ["bomb-a", "bomb-b", "bomb-c"]
        results = wire.topic_results(conn.request(19, 4, wire.create_topics_v4([(n, HUGE, 1) for n in names])))
        assert [(n, e) for n, e, _ in results] == [(n, POLICY_VIOLATION) for n in names]
        assert all("Excessively large number of partitions per request" in m for _, _, m in results)

        # Kafka refuses the whole request once it adds more than 10000 partitions: a small
        # topic next to a bomb is not created either.
        results = wire.topic_results(conn.request(19, 4, wire.create_topics_v4(
            [("bomb-d", HUGE, 1), ("small-next-to-bomb", 1, 1)])))
        assert [(n, e) for n, e, _ in results] == [("bomb-d", POLICY_VIOLATION), ("small-next-to-bomb", POLICY_VIOLATION)]

        # validate_only does not get further.
        results = wire.topic_results(conn.request(19, 4, wire.create_topics_v4([("bomb-e", HUGE, 1)], validate_only=True)))
        assert [(n, e) for n, e, _ in results] == [("bomb-e", POLICY_VIOLATION)]

        topics = wire.metadata_v4_topics(conn.request(3, 4, wire.metadata_v4(
            names + ["bomb-d", "bomb-e", "small-next-to-bomb"], auto_create=False)))
        assert {n: e for n, (e, _) in topics.items()} == {
            n: UNKNOWN_TOPIC_OR_PARTITION for n in names + ["bomb-d", "bomb-e", "small-next-to-bomb"]}
        # The connection that asked is still served.
        assert answers_api_versions(conn.sock)
    assert malformed(broker) == before
    health.check("1 CreateTopics 2^31-1 partitions")


def _header(api_key, version, flexible=False):
    return struct.pack(">hhi", api_key, version, 1) + wire.string("hostile") + (b"\x00" if flexible else b"")


def _frame(header, body):
    return struct.pack(">i", len(header) + len(body)) + header + body


COUNT = struct.pack(">i", HUGE)
FEW = b"\x00\x01t\x00\x00\x00\x00"

# name -> the whole frame (size prefix included). Every one is at most a few dozen bytes.
BOMBS = {
    # Produce v3: transactional_id null, acks -1, timeout, topics [count 2^31-1].
    "produce topics count": _frame(_header(0, 3), wire.nullable_string(None) + struct.pack(">hi", -1, 10000) + COUNT + FEW),
    # Produce v3: one topic, one partition whose records claim 2^31-1 bytes.
    "produce records length": _frame(_header(0, 3), wire.nullable_string(None) + struct.pack(">hi", -1, 10000)
                                     + struct.pack(">i", 1) + wire.string("t") + struct.pack(">ii", 1, 0)
                                     + struct.pack(">i", HUGE) + b"\x00" * 8),
    # Metadata v4: topics [count 2^31-1], then the bytes of one short name.
    "metadata topics count": _frame(_header(3, 4), COUNT + FEW),
    # Metadata v9 (flexible): compact topics array of 2^31-1 elements (varint 2^31).
    "metadata v9 compact array count": _frame(_header(3, 9, True), wire.uvarint(2**31) + FEW),
    # Fetch v4: replica -1, max wait, min bytes, max bytes, isolation, topics [count 2^31-1].
    "fetch topics count": _frame(_header(1, 4), struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0) + COUNT + FEW),
    # JoinGroup v5: group, timeouts, member, instance null, protocol type, protocols [2^31-1].
    "join group protocols count": _frame(_header(11, 5), wire.string("g") + struct.pack(">ii", 10000, 30000)
                                         + wire.string("") + wire.nullable_string(None) + wire.string("consumer")
                                         + COUNT + FEW),
    # ApiVersions v3 (flexible): name, version, then 2^31-1 tagged fields.
    "api versions tagged fields count": _frame(_header(18, 3, True), wire.compact_string("x") + wire.compact_string("1")
                                               + wire.uvarint(HUGE) + FEW),
    # ApiVersions v3: a client software name of 2^31-2 bytes (compact length 2^31-1).
    "api versions string length": _frame(_header(18, 3, True), wire.uvarint(HUGE) + b"abc"),
    # Metadata v9: one topic whose compact name claims 2^31-2 bytes.
    "metadata v9 string length": _frame(_header(3, 9, True), wire.uvarint(2) + wire.uvarint(HUGE) + b"abc"),
    # JoinGroup v5: a group id of 32767 bytes (the int16 maximum) with 3 behind it.
    "join group string length": _frame(_header(11, 5), struct.pack(">h", 32767) + b"abc"),
    # The header's own tagged fields (ApiVersions v3 uses header v2): 2^31-1 of them.
    "request header tagged fields count": _frame(struct.pack(">hhi", 18, 3, 1) + wire.string("hostile")
                                                 + wire.uvarint(HUGE), FEW),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_closes_only_its_connection(module_broker, name):
    broker, health = module_broker
    frame = BOMBS[name]
    assert len(frame) < 64
    before = malformed(broker)
    # A connection opened (and served) before the bomb.
    bystander = connect(broker.port)
    try:
        assert answers_api_versions(bystander)
        bomber = connect(broker.port)
        try:
            bomber.sendall(frame)
            assert closed_without_answer(bomber), f"{name}: the broker answered {frame.hex()}"
        finally:
            bomber.close()
        assert malformed(broker) == before + 1
        assert answers_api_versions(bystander, correlation=8)
    finally:
        bystander.close()
    health.check(f"1 bomb: {name}")
