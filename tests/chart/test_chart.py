"""The Helm chart and the examples, without a cluster: lint and render with the Helm v4 SDK
(helm-python-sdk), values.schema.json rejecting bad values, every rendered manifest validated
strictly against Kubernetes' schemas (kubernetes-validate), and the examples validated against
the CRDs' own schemas."""

import copy
import json
import subprocess
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "strom"
# The oldest and newest Kubernetes schemas kubernetes-validate ships; the operator suite
# applies the same objects to a real 1.20 API server.
KUBERNETES_VERSIONS = ["1.25.0", "1.37.0"]


def render(values=None, namespace="strom-system"):
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values or {}, name="strom", namespace=namespace, is_install=True)
    objects = []
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        objects += [o for o in yaml.safe_load_all(text) if o]
    return objects


def by_kind(objects):
    kinds = {}
    for o in objects:
        kinds.setdefault(o["kind"], []).append(o)
    return kinds


def test_lint_is_clean():
    report = helm.lint(CHART, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], json.dumps(report, indent=2)


def test_defaults_render_the_operator_with_cluster_wide_rbac_and_dashboards():
    kinds = by_kind(render())
    assert sorted(kinds) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    deployment = kinds["Deployment"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/strom-operator:dev"
    assert "--default-image=localhost/strom:dev" in container["args"]
    assert container["command"] == ["/usr/local/bin/strom-operator"]
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-election-namespace=strom-system" in container["args"]
    lease_rules = kinds["Role"][0]["rules"]
    assert lease_rules == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    assert "--log-format=json" in container["args"]
    assert not any(a.startswith("--namespace") for a in container["args"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True

    dashboards = [c for c in kinds["ConfigMap"] if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    shipped = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(k for c in dashboards for k in c["data"]) == shipped
    for c in dashboards:
        for text in c["data"].values():
            assert json.loads(text)["panels"], "a dashboard ConfigMap holds the dashboard JSON"

    rules = kinds["ClusterRole"][0]["rules"]
    verbs = {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("", "pods")] == {"get", "list", "watch", "delete"}, "pods are only read and restarted"
    assert verbs[("", "secrets")] == {"get", "create", "patch"}, "Secrets are read by name, never listed"
    assert all("*" not in v for v in verbs.values())


def test_one_watched_namespace_gets_a_role_there():
    kinds = by_kind(render({"watchNamespace": "kafka", "rbac": {"readNodes": False}}))
    assert "ClusterRole" not in kinds
    reading_nodes = by_kind(render({"watchNamespace": "kafka"}))
    assert [r["rules"] for r in reading_nodes["ClusterRole"]] == [
        [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]
    ], "the only cluster-wide permission is reading nodes, for racks"
    assert kinds["Role"][0]["metadata"]["namespace"] == "kafka"
    assert kinds["RoleBinding"][0]["subjects"][0]["namespace"] == "strom-system"
    args = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=kafka" in args


def test_monitors_are_optional():
    kinds = by_kind(render({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}))
    assert len(kinds["ServiceMonitor"]) == 1
    pod_monitor = kinds["PodMonitor"][0]
    relabel = pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"], "targetLabel": "cluster"} in relabel
    assert "ConfigMap" not in by_kind(render({"dashboards": {"enabled": False}}))


def test_the_prometheus_rule_carries_the_tested_alerts():
    assert "PrometheusRule" not in by_kind(render())
    rule = by_kind(render({"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kp"}}}}))[
        "PrometheusRule"
    ][0]
    assert rule["metadata"]["labels"]["release"] == "kp"
    rules_file = yaml.safe_load((CHART / "alerts" / "strom.rules.yaml").read_text())
    assert rule["spec"] == rules_file
    alerts = {r["alert"] for g in rules_file["groups"] for r in g["rules"]}
    assert alerts == {
        "StromOfflinePartitions",
        "StromUnderReplicatedPartitions",
        "StromNoActiveController",
        "StromLogVolumeNearlyFull",
        "StromConsumerLagGrowing",
    }
    for check in (["check", "rules", str(CHART / "alerts" / "strom.rules.yaml")],
                  ["test", "rules", str(Path(__file__).parent / "alerts_test.yaml")]):
        done = subprocess.run(["promtool", *check], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "values, key",
    [
        ({"logFormat": "xml"}, "logFormat"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"metrics": {"port": 70000}}, "port"),
        ({"watchNamespace": "Not_A_Namespace"}, "watchNamespace"),
        ({"replicas": 0}, "replicas"),
    ],
)
def test_wrong_values_fail_with_a_message_naming_the_key(values, key):
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError) as failure:
        chart.validate_schema(values)
    assert key in str(failure.value)
    with pytest.raises(helm.HelmError):
        chart.render(values, name="strom", namespace="strom-system", is_install=True)


def all_renders():
    return (
        render()
        + render({"watchNamespace": "kafka"})
        + render({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}})
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_and_crds_validate_strictly(version):
    crds = [yaml.safe_load(p.read_text()) for p in (CHART / "crds").glob("*.yaml")]
    assert len(crds) == 4
    checked = 0
    for obj in all_renders() + crds:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus Operator's CRDs are not Kubernetes' own
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 10


def strict(schema):
    """A CRD's structural schema made strict: unknown fields fail instead of being pruned."""
    schema = copy.deepcopy(schema)

    def walk(s):
        if not isinstance(s, dict):
            return
        if s.pop("x-kubernetes-int-or-string", False):
            s["type"] = ["integer", "string"]
        if s.get("nullable"):
            s["type"] = [s["type"], "null"] if isinstance(s.get("type"), str) else s.get("type")
        if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        for key in ("properties",):
            for v in s.get(key, {}).values():
                walk(v)
        for key in ("items", "additionalProperties"):
            walk(s.get(key))

    walk(schema)
    return schema


def crd_schemas():
    schemas = {}
    for path in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def test_examples_validate_against_the_crd_schemas():
    schemas = crd_schemas()
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert [p.name for p in examples] == [
        "cluster.yaml", "dedicated.yaml", "node-pools.yaml", "secured.yaml", "single-node.yaml", "topic.yaml"
    ]
    for path in examples:
        for obj in yaml.safe_load_all(path.read_text()):
            schema = schemas[(obj["apiVersion"], obj["kind"])]
            jsonschema.validate({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}, schema)


def test_the_strict_crd_schema_rejects_a_misspelt_field():
    schemas = crd_schemas()
    cluster = yaml.safe_load((ROOT / "examples" / "cluster.yaml").read_text())
    cluster["spec"]["pools"][0]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.validate({"spec": cluster["spec"]}, schemas[("strom.dev/v1alpha1", "KafkaCluster")])


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("pools", 0, "replicas"), -1, "minimum"),
        (("pools", 0, "name"), "Bad_Name", "does not match"),
        (("pools", 0, "storage", "size"), "lots", "does not match"),
        (("controllerPort",), 70000, "maximum"),
        (("listeners",), [{"name": "plaintext", "port": 9092}], "does not match"),
        (("listeners",), [{"name": "SECURE", "port": 9092, "authentication": "scram"}], "is not one of"),
        (("listeners",), [{"name": "OUT", "port": 9092, "type": "hostport"}], "is not one of"),
    ],
)
def test_the_crd_schema_rejects_out_of_range_values(path, value, message):
    schemas = crd_schemas()
    spec = yaml.safe_load((ROOT / "examples" / "cluster.yaml").read_text())["spec"]
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate({"spec": spec}, schemas[("strom.dev/v1alpha1", "KafkaCluster")])

