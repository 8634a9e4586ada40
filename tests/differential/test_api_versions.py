"""ApiVersions: every API Strom advertises is one Apache Kafka advertises, with Strom's maximum
version at most Kafka's. The ranges are compared field by field; Strom's narrower ranges are
listed at the end of the session."""

from kafka.protocol.metadata import ApiVersionsRequest

from compare import NOTES, compare
from raw import Raw

try:
    from kafka.protocol.api_key import ApiKey
except ImportError:
    ApiKey = None


def api_name(key):
    try:
        return ApiKey(key).name if ApiKey else str(key)
    except ValueError:
        return str(key)


def advertised(bootstrap):
    with Raw(bootstrap) as r:
        resp = r.request(ApiVersionsRequest, 3, client_software_name="differential", client_software_version="1")
    assert resp.error_code == 0
    return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}


def test_strom_advertises_a_subset_of_kafka(both):
    kafka, strom = advertised(both["kafka"]), advertised(both["strom"])
    not_in_kafka = sorted(set(strom) - set(kafka))
    above = {api_name(k): (strom[k], kafka[k]) for k in strom if k in kafka and strom[k][1] > kafka[k][1]}
    narrower = {api_name(k): (strom[k], kafka[k]) for k in strom if k in kafka and strom[k] != kafka[k]}
    only_kafka = [f"{api_name(k)} ({k})" for k in sorted(set(kafka) - set(strom))]
    NOTES.append(f"APIs only Kafka advertises: {len(only_kafka)}: {', '.join(only_kafka)}")
    NOTES.append("ApiVersions ranges that differ: " + ", ".join(
        f"{name} strom {s[0]}..{s[1]} kafka {k[0]}..{k[1]}" for name, (s, k) in sorted(narrower.items())))
    compare("api_versions", {api_name(k): {"min": kafka[k][0], "max": kafka[k][1]} for k in strom if k in kafka},
            {api_name(k): {"min": strom[k][0], "max": strom[k][1]} for k in strom if k in kafka})
    assert not not_in_kafka, f"Strom advertises APIs Kafka does not: {not_in_kafka}"
    assert not above, f"Strom advertises versions above Kafka's: {above}"
