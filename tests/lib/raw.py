"""Raw requests through kafka-python's protocol classes (kafka.protocol): one connection to one
broker, a request encoded at a chosen version, its response decoded into the same classes."""

import importlib
import socket
import struct

from wire import read_exactly


class Raw:
    """A connection to `bootstrap` that sends requests one at a time as `client_id`."""

    def __init__(self, bootstrap, timeout=15, client_id="differential"):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.correlation = 0
        self.client_id = client_id

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n):
        return read_exactly(self.sock, n)

    def request(self, request_class, version, **fields):
        """Sends `request_class` at `version` with `fields`; its decoded response."""
        self.correlation += 1
        req = request_class(version=version, **fields)
        req.with_header(correlation_id=self.correlation, client_id=self.client_id)
        self.sock.sendall(req.encode(header=True, framed=True))
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        module = importlib.import_module(request_class.__module__)
        response_class = getattr(module, request_class.__name__.replace("Request", "Response"))
        return response_class.decode(data, version=version, header=True)


def batch(values, timestamps=None):
    """A v2 record batch of `values` (bytes) with `timestamps` (ms, default now)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 22)
    for i, value in enumerate(values):
        builder.append(i, timestamp=None if timestamps is None else timestamps[i], key=None, value=value, headers=[])
    return bytes(builder.build())


def create_topic(r, name, partitions=1, replication=1, configs=None, version=7):
    """A CreateTopics request for one topic; its response."""
    from kafka.protocol.admin import CreateTopicsRequest as C

    topic = C.CreatableTopic(name=name, num_partitions=partitions, replication_factor=replication, assignments=[],
                             configs=[C.CreatableTopic.CreatableTopicConfig(name=k, value=v)
                                      for k, v in (configs or {}).items()])
    return r.request(C, version, topics=[topic], timeout_ms=15000, validate_only=False)


def produce(r, topic, values, partition=0, timestamps=None, acks=-1, version=9):
    from kafka.protocol.producer import ProduceRequest as P

    data = P.TopicProduceData(name=topic, partition_data=[P.TopicProduceData.PartitionProduceData(
        index=partition, records=batch(values, timestamps))])
    return r.request(P, version, transactional_id=None, acks=acks, timeout_ms=15000, topic_data=[data])


def list_offsets(r, topic, timestamp, partition=0, version=7):
    from kafka.protocol.consumer import ListOffsetsRequest as L

    t = L.ListOffsetsTopic(name=topic, partitions=[L.ListOffsetsTopic.ListOffsetsPartition(
        partition_index=partition, current_leader_epoch=-1, timestamp=timestamp)])
    return r.request(L, version, replica_id=-1, isolation_level=0, topics=[t])


def describe_configs(r, resource_type, name, version=4):
    from kafka.protocol.admin import DescribeConfigsRequest as D

    res = D.DescribeConfigsResource(resource_type=resource_type, resource_name=name, configuration_keys=None)
    return r.request(D, version, resources=[res], include_synonyms=False, include_documentation=False)


def incremental_alter(r, resource_type, name, configs, version=1):
    """IncrementalAlterConfigs SET of `configs` on one resource."""
    from kafka.protocol.admin import IncrementalAlterConfigsRequest as I

    res = I.AlterConfigsResource(resource_type=resource_type, resource_name=name, configs=[
        I.AlterConfigsResource.AlterableConfig(name=k, config_operation=0, value=v) for k, v in configs.items()])
    return r.request(I, version, resources=[res], validate_only=False)


def alter_configs(r, resource_type, name, configs, version=2):
    """AlterConfigs (the legacy whole-set replace) of one resource."""
    from kafka.protocol.admin import AlterConfigsRequest as A

    res = A.AlterConfigsResource(resource_type=resource_type, resource_name=name, configs=[
        A.AlterConfigsResource.AlterableConfig(name=k, value=v) for k, v in configs.items()])
    return r.request(A, version, resources=[res], validate_only=False)


def group_coordinator_ready(r, group, timeout=30):
    """Waits until `r`'s broker coordinates `group` and has loaded its offsets partition
    (FindCoordinator and DescribeGroups no longer answer COORDINATOR_NOT_AVAILABLE or
    COORDINATOR_LOAD_IN_PROGRESS)."""
    import time

    from kafka.protocol.admin import DescribeGroupsRequest as D
    from kafka.protocol.metadata import FindCoordinatorRequest as F

    deadline = time.monotonic() + timeout
    while True:
        error = r.request(F, 4, key_type=0, coordinator_keys=[group]).coordinators[0].error_code
        if error == 0:
            error = r.request(D, 5, groups=[group], include_authorized_operations=False).groups[0].error_code
        if error not in (14, 15):
            return
        assert time.monotonic() < deadline, f"the coordinator of {group} still answers error {error}"
        time.sleep(0.3)


def produce_ok(r, topic, values, partition=0, timestamps=None, timeout=30):
    """Produces until the partition's leader accepts (a new topic's leader may need a moment);
    the accepted response."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        resp = produce(r, topic, values, partition, timestamps)
        error = resp.responses[0].partition_responses[0].error_code
        if error == 0:
            return resp
        assert time.monotonic() < deadline, f"produce to {topic}-{partition} still fails with error {error}"
        time.sleep(0.2)


def create_ready_topic(r, name, partitions=1, configs=None, timeout=30):
    """Creates a topic and waits until the broker's metadata shows a leader for each partition
    (Kafka answers CreateTopics once the controller has the topic, a moment before its brokers)."""
    import time

    from kafka.protocol.metadata import MetadataRequest as M

    created = create_topic(r, name, partitions, 1, configs)
    assert created.topics[0].error_code == 0, created
    deadline = time.monotonic() + timeout
    while True:
        [topic] = r.request(M, 12, topics=[M.MetadataRequestTopic(name=name)],
                            allow_auto_topic_creation=False).topics
        if (topic.error_code == 0 and len(topic.partitions) == partitions
                and all(p.error_code == 0 and p.leader_id >= 0 for p in topic.partitions)):
            return created
        assert time.monotonic() < deadline, f"{name} has no leader for every partition after {timeout}s"
        time.sleep(0.2)


def alter_client_quotas(r, entries, validate_only=False, version=1):
    """AlterClientQuotas of `entries`: [(entity, {key: value, or None to remove})], an entity
    being [(entity_type, entity_name or None for the default)]."""
    from kafka.protocol.admin import AlterClientQuotasRequest as A

    return r.request(A, version, validate_only=validate_only, entries=[
        A.EntryData(entity=[A.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                    ops=[A.EntryData.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
                         for k, v in ops.items()])
        for entity, ops in entries])


def describe_client_quotas(r, components, strict=False, version=1):
    """DescribeClientQuotas with `components`: [(entity_type, match_type, match)]."""
    from kafka.protocol.admin import DescribeClientQuotasRequest as D

    return r.request(D, version, strict=strict, components=[
        D.ComponentData(entity_type=t, match_type=m, match=name) for t, m, name in components])
