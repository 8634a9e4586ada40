"""The CRDs' validation on a current API server: CEL rules for immutable fields and listener
sanity, list-map keys for unique names, and the KafkaNodePool's scale subresource. Each case
creates a valid object, then makes one change and checks that Kubernetes refuses it with the
CRD's message (or accepts it)."""

import copy
import uuid

import pytest
import yaml
from conftest import ROOT

CLUSTER = {
    "apiVersion": "strom.dev/v1alpha1",
    "kind": "KafkaCluster",
    "spec": {
        "pools": [
            {"name": "controllers", "roles": ["controller"], "replicas": 3},
            {"name": "brokers", "roles": ["broker"], "replicas": 3, "nodeIdStart": 1000},
            {"name": "more", "roles": ["broker"], "replicas": 1},
        ],
        "listeners": [{"name": "PLAINTEXT", "port": 9092}, {"name": "SECURE", "port": 9094, "tls": True}],
    },
}
NODE_POOL = {
    "apiVersion": "strom.dev/v1alpha1",
    "kind": "KafkaNodePool",
    "metadata": {"labels": {"strom.dev/cluster": "demo"}},
    "spec": {"roles": ["broker"], "replicas": 2, "nodeIdStart": 3000},
}
TOPIC = {
    "apiVersion": "strom.dev/v1alpha1",
    "kind": "KafkaTopic",
    "spec": {"clusterRef": {"name": "demo"}, "partitions": 6, "replicationFactor": 3},
}
USER = {
    "apiVersion": "strom.dev/v1alpha1",
    "kind": "KafkaUser",
    "spec": {"clusterRef": {"name": "demo"}, "authentication": {"type": "scram-sha-512"}},
}


def pools_with(index, **change):
    pools = copy.deepcopy(CLUSTER["spec"]["pools"])
    pools[index].update(change)
    return {"spec": {"pools": pools}}


def listeners(*extra, first=None):
    return {"spec": {"listeners": [first or {"name": "PLAINTEXT", "port": 9092}, *extra]}}


# Status the operator writes once the thing exists: the rules that fix a field read it.
FORMED = {"quorumVoters": "0@demo-controllers-0.demo-nodes.default.svc.cluster.local:9093"}
TOPIC_EXISTS = {"topicId": "M5mWyO8dSGmx3W6KZjGqNg", "topicName": "orders"}
USER_EXISTS = {"principal": "User:alice"}

# (object, its status or None, merge patch (or a function of the object's name giving one),
#  the refusal's message or None when the change is accepted)
UPDATES = {
    "controllerPort changed in a formed quorum": (CLUSTER, FORMED, {"spec": {"controllerPort": 9999}},
                                                  "controllerPort cannot change once the quorum is formed"),
    "controllerPort changed before the quorum formed": (CLUSTER, None, {"spec": {"controllerPort": 9999}}, None),
    "nodeIdStart changed": (CLUSTER, FORMED, pools_with(1, nodeIdStart=2000), "nodeIdStart cannot change"),
    "nodeIdStart pinned where it was absent": (CLUSTER, FORMED, pools_with(2, nodeIdStart=2000), None),
    "controller role added": (CLUSTER, FORMED, pools_with(2, roles=["broker", "controller"]),
                              "the controller role cannot be added or removed"),
    "broker role added": (CLUSTER, FORMED, pools_with(0, roles=["controller", "broker"]), None),
    "replicas grown": (CLUSTER, FORMED, pools_with(1, replicas=5), None),
    "listener named REPLICATION": (CLUSTER, None, listeners({"name": "REPLICATION", "port": 9095}),
                                   "CONTROLLER and REPLICATION are the operator's listener names"),
    "tls authentication without tls": (CLUSTER, None, listeners({"name": "MTLS", "port": 9095, "authentication": "tls"}),
                                       "authentication tls needs tls: true"),
    "certificate without tls": (CLUSTER, None, listeners({"name": "OWN", "port": 9095, "certificate": {"secretName": "s"}}),
                                "a certificate needs tls: true"),
    "external first listener": (CLUSTER, None, listeners(first={"name": "OUTSIDE", "port": 9092, "type": "nodeport"}),
                                "the first listener carries replication and must be of type internal"),
    "two listeners on one port": (CLUSTER, None, listeners({"name": "OTHER", "port": 9092}),
                                  "two listeners have the same port"),
    "a secured listener added": (CLUSTER, FORMED, listeners({"name": "SCRAM", "port": 9095, "tls": True,
                                                             "authentication": "scram-sha-512"}), None),
    "pool nodeIdStart changed": (NODE_POOL, None, {"spec": {"nodeIdStart": 3100}}, "nodeIdStart cannot change"),
    "pool controller role added": (NODE_POOL, None, {"spec": {"roles": ["broker", "controller"]}},
                                   "the controller role cannot be added or removed"),
    "partitions decreased": (TOPIC, TOPIC_EXISTS, {"spec": {"partitions": 3}}, "partitions cannot decrease"),
    "partitions decreased before the topic exists": (TOPIC, None, {"spec": {"partitions": 3}}, None),
    "partitions increased": (TOPIC, TOPIC_EXISTS, {"spec": {"partitions": 12}}, None),
    "replicationFactor changed": (TOPIC, TOPIC_EXISTS, {"spec": {"replicationFactor": 2}},
                                  "replicationFactor cannot change once the topic exists"),
    # What the operator asks for when Kafka refuses the factor (more replicas than brokers).
    "replicationFactor corrected before the topic exists": (TOPIC, None, {"spec": {"replicationFactor": 1}}, None),
    "topicName set to another name": (TOPIC, TOPIC_EXISTS, {"spec": {"topicName": "other"}},
                                      "topicName cannot change once the topic exists"),
    "topicName set to the name it has": (TOPIC, TOPIC_EXISTS, lambda name: {"spec": {"topicName": name}}, None),
    "topic clusterRef changed": (TOPIC, TOPIC_EXISTS, {"spec": {"clusterRef": {"name": "other"}}},
                                 "clusterRef cannot change once the topic exists"),
    "topic clusterRef corrected before the topic exists": (TOPIC, None, {"spec": {"clusterRef": {"name": "other"}}}, None),
    "topic config changed": (TOPIC, TOPIC_EXISTS, {"spec": {"config": {"retention.ms": "1000"}}}, None),
    "user clusterRef changed": (USER, USER_EXISTS, {"spec": {"clusterRef": {"name": "other"}}},
                                "clusterRef cannot change once the user exists in the cluster"),
    "user clusterRef corrected before it exists": (USER, None, {"spec": {"clusterRef": {"name": "other"}}}, None),
}


def created(api, template, status=None):
    obj = copy.deepcopy(template)
    name = f"t-{uuid.uuid4().hex[:8]}"
    obj.setdefault("metadata", {})["name"] = name
    code, body = api.create(obj)
    assert code == 201, body.get("message")
    if status is not None:
        code, body = api.merge_patch(obj["kind"], name, {"status": status}, "status")
        assert code == 200, body.get("message")
    return name


@pytest.mark.parametrize("case", UPDATES)
def test_updates(apiserver, case):
    template, status, patch, refusal = UPDATES[case]
    name = created(apiserver, template, status)
    code, body = apiserver.merge_patch(template["kind"], name, patch(name) if callable(patch) else patch)
    if refusal is None:
        assert code == 200, body.get("message")
    else:
        assert code == 422, f"accepted: {body.get('spec')}"
        assert refusal in body["message"], body["message"]
    apiserver.delete(template["kind"], name)


@pytest.mark.parametrize(
    "case, template, change, refusal",
    [
        ("listener named CONTROLLER", CLUSTER, listeners({"name": "CONTROLLER", "port": 9095}),
         "CONTROLLER and REPLICATION are the operator's listener names"),
        ("two pools of one name", CLUSTER,
         {"spec": {"pools": [{"name": "a", "roles": ["broker"], "replicas": 1}] * 2}}, "Duplicate value"),
        ("a role twice", NODE_POOL, {"spec": {"roles": ["broker", "broker"]}}, "Duplicate value"),
        ("no roles", NODE_POOL, {"spec": {"roles": []}}, "should have at least 1 items"),
        ("negative replicas", NODE_POOL, {"spec": {"replicas": -1}}, "should be greater than or equal to 0"),
    ],
)
def test_creation_is_refused(apiserver, case, template, change, refusal):
    obj = copy.deepcopy(template)
    obj["metadata"] = {**obj.get("metadata", {}), "name": f"t-{uuid.uuid4().hex[:8]}"}
    obj["spec"] = {**obj["spec"], **change["spec"]}
    status, body = apiserver.create(obj)
    assert status == 422, f"{case}: accepted"
    assert refusal in body["message"], body["message"]


def test_a_node_pool_scales_through_its_scale_subresource(apiserver):
    name = created(apiserver, NODE_POOL)
    selector = f"app.kubernetes.io/instance=demo,strom.dev/pool={name}"
    status, body = apiserver.merge_patch(
        "KafkaNodePool", name, {"status": {"replicas": 2, "labelSelector": selector}}, "status"
    )
    assert status == 200, body.get("message")

    status, scale = apiserver.request("GET", apiserver.plural_path("KafkaNodePool", name) + "/scale")
    assert status == 200, scale.get("message")
    assert scale["kind"] == "Scale"
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (2, 2)
    assert scale["status"]["selector"] == selector

    status, body = apiserver.merge_patch("KafkaNodePool", name, {"spec": {"replicas": 5}}, "scale")
    assert status == 200, body.get("message")
    _, pool = apiserver.request("GET", apiserver.plural_path("KafkaNodePool", name))
    assert pool["spec"]["replicas"] == 5
    status, body = apiserver.merge_patch("KafkaNodePool", name, {"spec": {"replicas": -1}}, "scale")
    assert status == 422, "a negative scale is refused"
    apiserver.delete("KafkaNodePool", name)


def test_every_example_is_accepted(apiserver):
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        for obj in yaml.safe_load_all(path.read_text()):
            status, body = apiserver.create(obj)
            assert status == 201, f"{path.name}: {obj['kind']} refused: {body.get('message')}"
            apiserver.delete(obj["kind"], obj["metadata"]["name"])
