"""AlterClientQuotas and DescribeClientQuotas: the same alterations, good and bad, and the same
filters sent to Apache Kafka and to Strom; each entry's error code and message, and what each
filter finds, compared. The quotas are removed again at the end: default entities would
otherwise throttle the other scenarios' clients."""

import uuid

from compare import compare
from kafka_checks import wait_until
from raw import Raw, alter_client_quotas, create_topic, describe_client_quotas

EXACT, DEFAULT, SPECIFIED = 0, 1, 2
HUGE = 1e12

# Valid alterations, each entity once; the defaults are too large to throttle anyone.
GOOD = [
    ([("user", "diff-user")], {"producer_byte_rate": 1048576, "request_percentage": 12.5}),
    ([("user", "diff-user"), ("client-id", "diff-app")], {"consumer_byte_rate": 2097152}),
    ([("user", None)], {"consumer_byte_rate": HUGE}),
    ([("client-id", "diff-app")], {"producer_byte_rate": 4096, "controller_mutation_rate": 5.5}),
    ([("client-id", None), ("user", None)], {"request_percentage": HUGE}),
    ([("ip", "10.9.8.7")], {"connection_creation_rate": 30}),
    # As in Kafka, an entity type named twice is a map entry set twice: the last name counts.
    ([("client-id", "dup-1"), ("client-id", "dup-2")], {"producer_byte_rate": 1}),
]

# Alterations each of which one broker must refuse, one entity each.
BAD = {
    "unknown_key": ([("user", "bad-1")], {"no_such_quota": 1}),
    "fractional": ([("client-id", "bad-2")], {"producer_byte_rate": 10.5}),
    "zero": ([("client-id", "bad-3")], {"request_percentage": 0}),
    "negative": ([("user", "bad-4")], {"consumer_byte_rate": -5}),
    "ip_with_user": ([("ip", "10.0.0.1"), ("user", "bad-5")], {"connection_creation_rate": 1}),
    "ip_key_on_user": ([("user", "bad-6")], {"connection_creation_rate": 1}),
    "unknown_type": ([("topic", "bad-7")], {"producer_byte_rate": 1}),
    "empty_name": ([("user", "")], {"producer_byte_rate": 1}),
    "bad_ip": ([("ip", "not-an-address")], {"connection_creation_rate": 1}),
    "empty_entity": ([], {"producer_byte_rate": 1}),
}

FILTERS = {
    "all": ([], False),
    "users_only": ([("user", SPECIFIED, None)], True),
    "any_user": ([("user", SPECIFIED, None)], False),
    "default_user": ([("user", DEFAULT, None)], False),
    "named_user_strict": ([("user", EXACT, "diff-user")], True),
    "named_client": ([("client-id", EXACT, "diff-app")], False),
    "ip": ([("ip", SPECIFIED, None)], False),
    "nothing_matches": ([("client-id", EXACT, "nobody")], False),
    "repeated_type": ([("user", SPECIFIED, None), ("user", DEFAULT, None)], False),
    "unknown_type": ([("topic", SPECIFIED, None)], False),
    "exact_without_name": ([("user", EXACT, None)], False),
    "default_with_name": ([("user", DEFAULT, "x")], False),
    "ip_with_user": ([("ip", SPECIFIED, None), ("user", SPECIFIED, None)], False),
}


def outcomes(resp):
    return [{"error_code": e.error_code, "message": e.error_message or None} for e in resp.entries]


def found(resp):
    """The response as comparable data: the error, and the entries in a fixed order."""
    entries = {}
    for e in resp.entries or []:
        entity = ",".join(sorted(f"{x.entity_type}={x.entity_name}" for x in e.entity))
        entries[entity] = {v.key: v.value for v in e.values}
    return {"error_code": resp.error_code, "message": resp.error_message or None,
            "entries": [{"name": k, "values": entries[k]} for k in sorted(entries)]}


def entity_names(entries):
    return {",".join(sorted(f"{t}={n}" for t, n in dict(entity).items())) for entity, _ in entries}


def described_entities(r):
    return {e["name"] for e in found(describe_client_quotas(r, []))["entries"]}


def wait_for_entities(r, names, timeout=15):
    """Kafka answers DescribeClientQuotas from the broker's metadata, which follows the
    controller's commit a moment later."""
    wait_until(lambda: described_entities(r) == names, timeout, f"quota entities {names}", interval=0.1)


def test_client_quotas(both):
    altered, refused, described, validated = {}, {}, {}, {}
    for side, bootstrap in both.items():
        with Raw(bootstrap) as r:
            altered[side] = outcomes(alter_client_quotas(r, GOOD))
            wait_for_entities(r, entity_names(GOOD))
            refused[side] = {name: outcomes(alter_client_quotas(r, [entry]))[0] for name, entry in BAD.items()}
            validated[side] = outcomes(alter_client_quotas(r, [([("user", "only-validated")],
                                                                {"producer_byte_rate": 1})], validate_only=True))
            described[side] = {name: found(describe_client_quotas(r, components, strict))
                               for name, (components, strict) in FILTERS.items()}
            removed = [(entity, {key: None for key in ops}) for entity, ops in GOOD]
            assert all(o["error_code"] == 0 for o in outcomes(alter_client_quotas(r, removed)))
            wait_for_entities(r, set())
    assert all(o["error_code"] == 0 for o in altered["strom"])
    assert all(o["error_code"] != 0 for o in refused["strom"].values())
    assert {e["name"] for e in described["strom"]["all"]["entries"]} == entity_names(GOOD)
    compare("client_quotas_alter", altered["kafka"], altered["strom"])
    compare("client_quotas_refused", refused["kafka"], refused["strom"])
    compare("client_quotas_validate_only", validated["kafka"], validated["strom"])
    compare("client_quotas_describe", described["kafka"], described["strom"])


def test_partition_mutation_quota(both):
    """controller_mutation_rate=1 allows a burst of 11 partitions (one a second over the
    quota's 11 windows): a first topic of 12 overdraws it; CreateTopics v6 and later is then
    refused with THROTTLING_QUOTA_EXCEEDED, v5 only throttled."""
    results = {}
    for side, bootstrap in both.items():
        client = f"mutator-{side}"
        with Raw(bootstrap, client_id=client) as r:
            entity = [([("client-id", client)], {"controller_mutation_rate": 1})]
            assert outcomes(alter_client_quotas(r, entity))[0]["error_code"] == 0
            wait_for_entities(r, entity_names(entity))
            answers = []
            for name, partitions, version in (("first", 12, 7), ("strict", 1, 7), ("permissive", 1, 5)):
                resp = create_topic(r, f"mutation-{name}-{uuid.uuid4().hex[:6]}", partitions, version=version)
                [topic] = resp.topics
                answers.append({"name": name, "error_code": topic.error_code,
                                "message": topic.error_message or None, "throttled": resp.throttle_time_ms > 0})
            results[side] = answers
            alter_client_quotas(r, [(entity[0][0], {"controller_mutation_rate": None})])
            wait_for_entities(r, set())
    assert [a["error_code"] for a in results["strom"]] == [0, 89, 0], results["strom"]
    compare("partition_mutation_quota", results["kafka"], results["strom"])
