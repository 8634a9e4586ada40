"""Field-by-field comparison of what Apache Kafka and Strom answer to the same request, after
normalising what must differ between two clusters, and the table of differences known and
accepted (KNOWN). A difference that KNOWN does not list fails its test."""

from fnmatch import fnmatchcase

# Fields that differ between any two clusters: dropped before comparing.
IGNORED = {"throttle_time_ms", "cluster_id", "host", "port", "topic_id", "client_host", "member_id",
           "log_append_time_ms", "client_software_version",
           "client_software_name", "supported_features", "finalized_features", "finalized_features_epoch",
           "zk_migration_ready", "node_endpoints"}

# Known differences: field pattern (fnmatch over "scenario/path") -> reason. Reasons beginning
# "Strom bug:" are to be fixed in the broker, and their entries removed with the fix.
KNOWN = {
    # ApiVersions
    "api_versions/*.max":
        "Strom implements fewer versions of some APIs than Kafka 4.4 (never more: test_api_versions checks that "
        "each of Strom's ranges lies within Kafka's); clients negotiate the highest common version",
    # Errors
    "fetch_offset/*.aborted_transactions":
        "Fetch at read_uncommitted: Kafka sends a null aborted-transaction list, Strom an empty one; clients "
        "treat both alike",
    "fetch_offset/[bn]e*.high_watermark":
        "Fetch answered OFFSET_OUT_OF_RANGE: Kafka sends -1 for the partition's high watermark, last stable "
        "offset and log start offset, Strom the real ones; clients ignore them on an error",
    "fetch_offset/[bn]e*.last_stable_offset": "see fetch_offset high_watermark",
    "fetch_offset/[bn]e*.log_start_offset": "see fetch_offset high_watermark",
    "record_too_large/*.error_message":
        "Produce answered MESSAGE_TOO_LARGE: Strom says why in error_message, Kafka leaves it null",
    "topic_admin/partitions_unknown_topic.*.error_message":
        "CreatePartitions of an unknown topic: Strom says why in error_message, Kafka leaves it null",
    "client_quotas_refused/ip_with_user.message":
        "Kafka's message runs two words together ('IP entity shouldnot be combined'); Strom's is otherwise the same",
    # Topic configs
    "describe_configs_topic/errors.deadletterqueue.group.enable.*":
        "Kafka 4.4 topic config for share groups' dead-letter queue (KIP-1191); Strom has no share groups",
    "describe_configs_topic/max.decompressed.message.bytes.*":
        "Kafka 4.4 topic config capping a decompressed batch; Strom does not implement it",
    "describe_configs_topic/remote.copy.lag.*":
        "Kafka 4.4 tiered-storage topic configs; Strom has no tiered storage",
    # Broker configs
    "describe_configs_broker/*.read_only":
        "Kafka marks the broker configs it can change at run time (per broker or cluster-wide) read_only=false; "
        "Strom changes no broker config at run time and marks every one read-only",
    "describe_configs_broker/min.insync.replicas.config_source":
        "Kafka 4.4 formats a cluster with eligible leader replicas, which stores min.insync.replicas as a "
        "cluster-wide dynamic default (DYNAMIC_DEFAULT_BROKER_CONFIG); Strom reports its static default",
    "describe_configs_broker/controller.quorum.election.timeout.ms.value":
        "Strom's default election timeout is 500 ms, Kafka's 1000 ms",
    "describe_configs_broker/log.flush.scheduler.interval.ms.value":
        "Strom checks log.flush.interval.ms every 1000 ms by default; Kafka's default is Long.MAX_VALUE",
    "describe_configs_broker/queued.max.request.bytes.value":
        "Strom bounds the memory of queued requests by default (512 MiB); Kafka's default -1 is unbounded",
    "describe_configs_broker/sasl.enabled.mechanisms.value":
        "Strom has no GSSAPI (Kerberos); its default mechanisms are SCRAM-SHA-256,SCRAM-SHA-512",
    "describe_configs_broker/sasl.mechanism.inter.broker.protocol.value":
        "Strom has no GSSAPI (Kerberos); its default is PLAIN",
    "describe_configs_broker/ssl.*store.type.value": "Strom reads PEM stores only; Kafka's default is JKS",
}

# Every comparison of the session: (field, kafka value, strom value, equal).
RESULTS = []

# Lines for the end of the session that are not field comparisons (what only one side has).
NOTES = []

ABSENT = "<absent>"


def _key(item, index):
    if isinstance(item, dict):
        for name in ("name", "topic", "group_id", "api_key", "partition_index", "partition", "resource_name",
                     "config_name"):
            if item.get(name) is not None:
                return str(item[name])
    return str(index)


def flatten(value, prefix=""):
    """{path: leaf} of nested dicts and lists; list items are keyed by their name or index."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if k in IGNORED:
                continue
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{_key(v, i)}]"))
    else:
        if prefix.endswith("error_message") and value is not None:
            value = "<message>"
        out[prefix] = value
    return out


def known(field):
    """The reason `field` may differ, or None."""
    for pattern, reason in KNOWN.items():
        if fnmatchcase(field, pattern):
            return reason
    return None


def compare(scenario, kafka, strom):
    """Compares `kafka` and `strom` (nested dicts/lists, or flat) field by field, records each
    field, and fails on a difference that KNOWN does not list."""
    k, s = flatten(kafka), flatten(strom)
    unexpected = []
    for path in sorted(set(k) | set(s)):
        field = f"{scenario}/{path}"
        kv, sv = k.get(path, ABSENT), s.get(path, ABSENT)
        equal = kv == sv
        RESULTS.append((field, kv, sv, equal))
        if not equal:
            if known(field) is None:
                unexpected.append(f"{field}: kafka={kv!r} strom={sv!r}")
    assert not unexpected, "differences not in compare.KNOWN:\n" + "\n".join(unexpected)


def summary():
    """The lines printed at the end of the session."""
    equal = sum(1 for r in RESULTS if r[3])
    lines = [f"{equal} of {len(RESULTS)} compared fields equal", *NOTES]
    for field, kv, sv, eq in RESULTS:
        if not eq:
            lines.append(f"  {field}: kafka={kv!r} strom={sv!r}" + ("" if known(field) else "  [NOT KNOWN]"))
    seen = {pattern for pattern in KNOWN for field, _, _, eq in RESULTS if not eq and fnmatchcase(field, pattern)}
    unseen = [pattern for pattern in KNOWN if pattern not in seen]
    if unseen:
        lines.append(f"known differences not seen this session (fixed, or their test did not run): {', '.join(unseen)}")
    return lines


def markdown():
    """KNOWN as a markdown table (for the README's compatibility section)."""
    rows = ["| Field (scenario/path pattern) | Difference |", "|---|---|"]
    for pattern, reason in KNOWN.items():
        rows.append(f"| `{pattern}` | {reason.replace('|', '/')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
