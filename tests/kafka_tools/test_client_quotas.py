"""kafka-configs for quotas (--entity-type users, clients, ips): added, described and deleted
as Apache Kafka prints them, each line read back from every broker of the target; a value the
broker refuses gets Kafka's error."""

import uuid

from tools import admin_tool, retry, run


def configs(target, *args, bootstrap=None, ok=True):
    return run("configs", "--bootstrap-server", bootstrap or target.bootstrap, *args, ok=ok)


def describe_everywhere(target, *entity, expected, timeout=15):
    """Asserts that every broker describes `entity` as `expected` (quotas reach the other
    brokers through the metadata log, a moment after the change is answered)."""
    for address in target.addresses:
        def described():
            out = configs(target, "--describe", *entity, bootstrap=address).stdout.strip()
            assert out == expected, f"{address} describes {out!r}"
        retry(described, timeout, f"{address} to describe {expected!r}")


def test_quotas_added_described_and_deleted(target):
    user, client = f"u-{uuid.uuid4().hex[:6]}", f"c-{uuid.uuid4().hex[:6]}"
    both = ("--entity-type", "users", "--entity-name", user, "--entity-type", "clients", "--entity-name", client)
    out = configs(target, "--alter", *both, "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152")
    assert out.stdout.strip() == f"Completed updating config for user {user}."
    out = configs(target, "--alter", "--entity-type", "users", "--entity-name", user,
                  "--add-config", "request_percentage=25.5,controller_mutation_rate=10")
    assert out.stdout.strip() == f"Completed updating config for user {user}."
    out = configs(target, "--alter", "--entity-type", "clients", "--entity-name", client,
                  "--add-config", "consumer_byte_rate=512000")
    assert out.stdout.strip() == f"Completed updating config for client {client}."

    describe_everywhere(target, *both, expected=f"Quota configs for user-principal '{user}', client-id '{client}' "
                                                "are consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0")
    describe_everywhere(target, "--entity-type", "users", "--entity-name", user,
                        expected=f"Quota configs for user-principal '{user}' are "
                                 "controller_mutation_rate=10.0, request_percentage=25.5")
    describe_everywhere(target, "--entity-type", "clients", "--entity-name", client,
                        expected=f"Quota configs for client-id '{client}' are consumer_byte_rate=512000.0")

    configs(target, "--alter", *both, "--delete-config", "consumer_byte_rate")
    describe_everywhere(target, *both, expected=f"Quota configs for user-principal '{user}', client-id '{client}' "
                                                "are producer_byte_rate=1048576.0")
    for entity, keys in ((both, "producer_byte_rate"),
                         (("--entity-type", "users", "--entity-name", user),
                          "controller_mutation_rate,request_percentage"),
                         (("--entity-type", "clients", "--entity-name", client), "consumer_byte_rate")):
        configs(target, "--alter", *entity, "--delete-config", keys)
        describe_everywhere(target, *entity, expected="")


# Default and address quotas, large enough to throttle no other test's clients: (entity, config).
DEFAULTS = [
    (("--entity-type", "users", "--entity-default", "--entity-type", "clients", "--entity-default"),
     "producer_byte_rate=999999999"),
    (("--entity-type", "ips", "--entity-default"), "connection_creation_rate=100000"),
    (("--entity-type", "ips", "--entity-name", "10.1.2.3"), "connection_creation_rate=7"),
]


def test_default_and_address_quotas(target):
    for entity, config in DEFAULTS:
        configs(target, "--alter", *entity, "--add-config", config)
    try:
        describe_everywhere(target, *DEFAULTS[0][0], expected="Quota configs for the default user-principal, the "
                                                              "default client-id are producer_byte_rate=9.99999999E8")
        lines = configs(target, "--describe", "--entity-type", "ips").stdout.strip().splitlines()
        assert sorted(lines) == ["Quota configs for ip '10.1.2.3' are connection_creation_rate=7.0",
                                 "Quota configs for the default ip are connection_creation_rate=100000.0"]
    finally:
        for entity, config in DEFAULTS:
            configs(target, "--alter", *entity, "--delete-config", config.split("=")[0])
    describe_everywhere(target, "--entity-type", "ips", expected="")


def test_refused_quota_values(target):
    for config, error in (("producer_byte_rate=-1", "Quota producer_byte_rate must be greater than 0"),
                          ("producer_byte_rate=1.5", "producer_byte_rate cannot be a fractional value.")):
        done = admin_tool("configs", target, "--alter", "--entity-type", "clients", "--entity-name", "refused",
                          "--add-config", config, ok=False)
        assert f"org.apache.kafka.common.errors.InvalidRequestException: {error}" in done.stdout + done.stderr
    assert configs(target, "--describe", "--entity-type", "clients", "--entity-name", "refused").stdout.strip() == ""
