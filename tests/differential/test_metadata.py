"""Metadata of a new topic and DescribeCluster: partitions, leaders, replicas, ISR, leader
epochs, the broker list and the controller, Apache Kafka's against Strom's."""

import uuid

from kafka.protocol.admin import DescribeClusterRequest
from kafka.protocol.metadata import MetadataRequest

from compare import compare
from raw import Raw, create_ready_topic, produce_ok


def test_metadata_of_a_topic_and_the_cluster(both):
    name = f"meta-{uuid.uuid4().hex[:8]}"
    found = {}
    for side, bootstrap in both.items():
        with Raw(bootstrap) as r:
            create_ready_topic(r, name, 3)
            for p in range(3):
                produce_ok(r, name, [b"x"], partition=p)
            meta = r.request(MetadataRequest, 12, topics=[MetadataRequest.MetadataRequestTopic(name=name)],
                             allow_auto_topic_creation=False, include_topic_authorized_operations=True).to_dict()
            meta["topics"][0]["name"] = "<topic>"
            cluster = r.request(DescribeClusterRequest, 1, include_cluster_authorized_operations=False,
                                endpoint_type=1).to_dict()
            found[side] = {"metadata": meta, "describe_cluster": cluster}
    compare("metadata", found["kafka"], found["strom"])
