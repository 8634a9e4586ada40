"""The error code (and the rest of the response) of each bad request, sent as the same raw
request to Apache Kafka and to Strom."""

import time
import uuid

import pytest
from kafka.protocol.admin import DeleteGroupsRequest, DescribeGroupsRequest
from kafka.protocol.consumer import FetchRequest, HeartbeatRequest, JoinGroupRequest, OffsetCommitRequest, \
    OffsetFetchRequest, SyncGroupRequest
from kafka.protocol.metadata import MetadataRequest

from compare import compare
from raw import Raw, alter_configs, create_ready_topic, create_topic, describe_configs, group_coordinator_ready, \
    incremental_alter, list_offsets, produce, produce_ok

TOPIC = 2
MISSING = "no-such-topic"


def on_both(both, scenario):
    """`scenario(raw connection, unique suffix)` against each broker: {"kafka": ..., "strom": ...}."""
    suffix = uuid.uuid4().hex[:8]
    out = {}
    for name, bootstrap in both.items():
        with Raw(bootstrap) as r:
            out[name] = scenario(r, suffix)
    return out


def check(both, name, scenario):
    out = on_both(both, scenario)
    compare(name, out["kafka"], out["strom"])


def test_unknown_topic(both):
    def scenario(r, _):
        return {
            "metadata": r.request(MetadataRequest, 12, topics=[MetadataRequest.MetadataRequestTopic(name=MISSING)],
                                  allow_auto_topic_creation=False).to_dict()["topics"],
            "describe_configs": describe_configs(r, TOPIC, MISSING).to_dict(),
            "list_offsets": list_offsets(r, MISSING, -1).to_dict(),
            "produce": produce(r, MISSING, [b"x"]).to_dict(),
        }
    check(both, "unknown_topic", scenario)


@pytest.mark.parametrize("partitions,replication", [(0, 1), (-2, 1), (1, 0), (1, -2), (1, 3)])
def test_invalid_partitions_or_replication(both, partitions, replication):
    def scenario(r, suffix):
        return create_topic(r, f"bad-{suffix}", partitions, replication).to_dict()
    check(both, f"create_topic[partitions={partitions},replication={replication}]", scenario)


BAD_CONFIGS = {
    "invalid_value": {"retention.ms": "soon"},
    "invalid_enum": {"cleanup.policy": "shred"},
    "out_of_range": {"min.insync.replicas": "0"},
    "unknown_name": {"no.such.config": "1"},
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_on_create(both, case):
    def scenario(r, suffix):
        resp = create_topic(r, f"cfg-{suffix}", 1, 1, BAD_CONFIGS[case]).to_dict()
        for t in resp["topics"]:
            t["name"] = "<topic>"
        return resp
    check(both, f"create_topic_config[{case}]", scenario)


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_on_alter(both, case):
    def scenario(r, suffix):
        name = f"alter-{suffix}"
        create_ready_topic(r, name)
        out = {"incremental": incremental_alter(r, TOPIC, name, BAD_CONFIGS[case]).to_dict(),
               "legacy": alter_configs(r, TOPIC, name, BAD_CONFIGS[case]).to_dict()}
        for resp in out.values():
            for res in resp["responses"]:
                res["resource_name"] = "<topic>"
        return out
    check(both, f"alter_config[{case}]", scenario)


def test_offset_out_of_range_on_fetch(both):
    def scenario(r, suffix):
        name = f"fetch-{suffix}"
        create_ready_topic(r, name)
        produce_ok(r, name, [b"a", b"b", b"c"])
        out = {}
        for label, offset in (("beyond_end", 100), ("negative", -5), ("at_end", 3)):
            resp = r.request(FetchRequest, 12, replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20,
                             isolation_level=0, session_id=0, session_epoch=-1, forgotten_topics_data=[],
                             rack_id="", topics=[FetchRequest.FetchTopic(topic=name, partitions=[
                                 FetchRequest.FetchTopic.FetchPartition(partition=0, current_leader_epoch=-1,
                                                                        fetch_offset=offset, last_fetched_epoch=-1,
                                                                        log_start_offset=-1,
                                                                        partition_max_bytes=1 << 20)])])
            d = resp.to_dict()
            d["responses"][0]["topic"] = "<topic>"
            out[label] = d
        return out
    check(both, "fetch_offset", scenario)


def test_record_too_large(both):
    def scenario(r, suffix):
        name = f"large-{suffix}"
        create_ready_topic(r, name, configs={"max.message.bytes": "1000"})
        produce_ok(r, name, [b"small"])
        resp = produce(r, name, [b"x" * 2000]).to_dict()
        resp["responses"][0]["name"] = "<topic>"
        return resp
    check(both, "record_too_large", scenario)


def test_unknown_group(both):
    def scenario(r, suffix):
        group = f"nogroup-{suffix}"
        group_coordinator_ready(r, group)
        out = {
            "describe": r.request(DescribeGroupsRequest, 5, groups=[group], include_authorized_operations=False)
            .to_dict(),
            "offset_fetch": r.request(OffsetFetchRequest, 8, require_stable=False, groups=[
                OffsetFetchRequest.OffsetFetchRequestGroup(group_id=group, topics=None)]).to_dict(),
            "delete": r.request(DeleteGroupsRequest, 2, groups_names=[group]).to_dict(),
        }
        for resp in out.values():
            for g in resp.get("groups", []) + resp.get("results", []):
                g["group_id"] = "<group>"
        return out
    check(both, "unknown_group", scenario)


def test_wrong_generation(both):
    def scenario(r, suffix):
        group, topic = f"gen-{suffix}", f"gen-{suffix}"
        create_ready_topic(r, topic)
        group_coordinator_ready(r, group)
        protocols = [JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"")]

        def join(member_id):
            return r.request(JoinGroupRequest, 7, group_id=group, session_timeout_ms=30000,
                             rebalance_timeout_ms=30000, member_id=member_id, group_instance_id=None,
                             protocol_type="consumer", protocols=protocols)
        first = join("")
        joined = join(first.member_id)
        member, generation = joined.member_id, joined.generation_id
        sync = r.request(SyncGroupRequest, 5, group_id=group, generation_id=generation, member_id=member,
                         group_instance_id=None, protocol_type="consumer", protocol_name="range", assignments=[
                             SyncGroupRequest.SyncGroupRequestAssignment(member_id=member, assignment=b"")])

        def heartbeat(gen, member_id):
            return r.request(HeartbeatRequest, 4, group_id=group, generation_id=gen, member_id=member_id,
                             group_instance_id=None).to_dict()

        def commit(gen, member_id):
            resp = r.request(OffsetCommitRequest, 8, group_id=group, generation_id_or_member_epoch=gen,
                             member_id=member_id, group_instance_id=None, topics=[
                                 OffsetCommitRequest.OffsetCommitRequestTopic(name=topic, partitions=[
                                     OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                                         partition_index=0, committed_offset=0, committed_leader_epoch=-1,
                                         committed_metadata="")])]).to_dict()
            resp["topics"][0]["name"] = "<topic>"
            return resp
        return {
            "join_without_member_id": first.to_dict(),
            "join": {k: v for k, v in joined.to_dict().items() if k not in ("leader", "members")},
            "sync": sync.to_dict(),
            "heartbeat_ok": heartbeat(generation, member),
            "heartbeat_wrong_generation": heartbeat(generation + 1, member),
            "heartbeat_unknown_member": heartbeat(generation, "stranger"),
            "commit_wrong_generation": commit(generation + 1, member),
            "commit_unknown_member": commit(generation, "stranger"),
            "commit_ok": commit(generation, member),
        }
    check(both, "group_generation", scenario)


def test_topic_admin_errors(both):
    from kafka.protocol.admin import CreatePartitionsRequest as P
    from kafka.protocol.admin import DeleteTopicsRequest

    def create_partitions(r, name, count):
        resp = r.request(P, 3, topics=[P.CreatePartitionsTopic(name=name, count=count, assignments=None)],
                         timeout_ms=15000, validate_only=False).to_dict()
        resp["results"][0]["name"] = "<topic>"
        return resp

    def scenario(r, suffix):
        name = f"admin-{suffix}"
        create_ready_topic(r, name, 2)
        out = {
            "create_existing": create_topic(r, name, 2).to_dict(),
            "create_bad_name": create_topic(r, "bad name!").to_dict(),
            "create_dot": create_topic(r, "..").to_dict(),
            "create_long_name": create_topic(r, "x" * 250).to_dict(),
            "partitions_fewer": create_partitions(r, name, 1),
            "partitions_same": create_partitions(r, name, 2),
            "partitions_unknown_topic": create_partitions(r, MISSING, 3),
            "delete_unknown_topic": r.request(DeleteTopicsRequest, 4, topic_names=[MISSING], timeout_ms=15000)
            .to_dict(),
            "describe_configs_other_broker": describe_configs(r, 4, "2").to_dict(),
            "describe_configs_bad_broker_id": describe_configs(r, 4, "one").to_dict(),
        }
        out["create_existing"]["topics"][0]["name"] = "<topic>"
        out["create_long_name"]["topics"][0]["name"] = "<250 characters>"
        return out
    check(both, "topic_admin", scenario)


def test_commit_without_a_member(both):
    """Commits outside any generation (as a consumer with assign() does), to an unknown topic and
    to an unknown partition, and a heartbeat to a group that does not exist."""
    def commit(r, group, topic, partition, generation=-1, member=""):
        resp = r.request(OffsetCommitRequest, 8, group_id=group, generation_id_or_member_epoch=generation,
                         member_id=member, group_instance_id=None, topics=[
                             OffsetCommitRequest.OffsetCommitRequestTopic(name=topic, partitions=[
                                 OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
                                     partition_index=partition, committed_offset=1, committed_leader_epoch=-1,
                                     committed_metadata="")])]).to_dict()
        resp["topics"][0]["name"] = "<topic>"
        return resp

    def scenario(r, suffix):
        group, topic = f"simple-{suffix}", f"simple-{suffix}"
        create_ready_topic(r, topic)
        group_coordinator_ready(r, group)
        return {
            "commit_simple": commit(r, group, topic, 0),
            "commit_unknown_topic": commit(r, group, MISSING, 0),
            "commit_unknown_partition": commit(r, group, topic, 5),
            "commit_generation_of_empty_group": commit(r, group, topic, 0, 3, "someone"),
            "heartbeat_unknown_group": r.request(HeartbeatRequest, 4, group_id=f"none-{suffix}", generation_id=1,
                                                 member_id="someone", group_instance_id=None).to_dict(),
        }
    check(both, "commit_without_member", scenario)


def test_consumer_reset_error(both):
    """A confluent-kafka consumer with auto.offset.reset=error told to start past the end."""
    from confluent_kafka import Consumer, TopicPartition

    def scenario(bootstrap, suffix):
        name = f"reset-{suffix}"
        with Raw(bootstrap) as r:
            create_ready_topic(r, name)
            produce_ok(r, name, [b"a", b"b"])
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": name, "auto.offset.reset": "error",
                      "enable.auto.commit": False})
        try:
            c.assign([TopicPartition(name, 0, 50)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None:
                    return {"error": m.error().name() if m.error() else None, "offset": m.offset()}
            return {"error": "no message or error in 30 s"}
        finally:
            c.close()

    suffix = uuid.uuid4().hex[:8]
    found = {side: scenario(bootstrap, suffix) for side, bootstrap in both.items()}
    compare("consumer_reset_error", found["kafka"], found["strom"])
