"""Security settings that cannot work stop start-up: the broker exits with a non-zero code and
its output names the property (or file, or mechanism) at fault, instead of serving with less
security than was asked for. Each case is one change to a configuration that starts."""

import re

import pytest

from secure_settings import security_overrides

PLAIN_LISTENERS = ("SSL", "SASL_PLAINTEXT")


def without(props, *keys):
    return {k: v for k, v in props.items() if k not in keys}


# case: (listeners, their good_overrides and the test's tmp_path -> (overrides, extra
# arguments), what the output must name; {tmp} stands for tmp_path)
CASES = {
    "ssl listener without a keystore": (
        ("SSL",), lambda props, tmp: (without(props, "ssl.keystore.location"), ()), "ssl.keystore.location"),
    "keystore file missing": (
        ("SSL",), lambda props, tmp: ({**props, "ssl.keystore.location": f"{tmp}/missing.pem"}, ()),
        "{tmp}/missing.pem"),
    "unknown listener ssl key": (
        ("SSL",), lambda props, tmp: ({**props, "listener.name.ssl.ssl.bogus": "1"}, ()),
        "listener.name.ssl.ssl.bogus"),
    "re-authentication": (
        ("SSL",), lambda props, tmp: ({**props, "connections.max.reauth.ms": "1000"}, ()),
        "connections.max.reauth.ms"),
    "gssapi": (  # broker-wide, so the SASL listener has it
        PLAIN_LISTENERS,
        lambda props, tmp: ({**without(props, "listener.name.sasl_plaintext.sasl.enabled.mechanisms"),
                             "sasl.enabled.mechanisms": "GSSAPI"}, ()),
        "sasl.enabled.mechanisms"),
    "plain without a jaas line": (
        PLAIN_LISTENERS,
        lambda props, tmp: (without(props, "listener.name.sasl_plaintext.plain.sasl.jaas.config"), ()),
        "listener.name.sasl_plaintext.plain.sasl.jaas.config"),
    "zookeeper-era authorizer": (
        ("SSL",),
        lambda props, tmp: ({**props, "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer"}, ()),
        "authorizer.class.name"),
    "scram-sha-1 seed": (
        ("SSL",), lambda props, tmp: (props, ("--add-scram", "SCRAM-SHA-1=[name=a,password=b]")), "SCRAM-SHA-1"),
}


def good_overrides(pki, listeners):
    """A configuration that starts: security_overrides, with PLAIN users on SASL_PLAINTEXT."""
    props = security_overrides(pki, listeners)
    if "SASL_PLAINTEXT" in listeners:
        props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] = "PLAIN"
        props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_a="b";')
    return props


@pytest.mark.parametrize("listeners", [("SSL",), PLAIN_LISTENERS])
def test_the_unchanged_configuration_starts(start_broker, pki, listeners):
    start_broker(good_overrides(pki, listeners), listeners=listeners)


@pytest.mark.parametrize("case", CASES)
def test_bad_security_setting_stops_start_up(start_broker, pki, tmp_path, case):
    listeners, change, named = CASES[case]
    overrides, extra_args = change(good_overrides(pki, listeners), tmp_path)
    with pytest.raises(RuntimeError) as stopped:
        start_broker(overrides, extra_args, listeners)
    message = str(stopped.value)
    exited = re.match(r"broker exited with (-?\d+): ", message)
    assert exited, message  # not "did not become ready": the process ended by itself
    assert int(exited.group(1)) != 0, message
    assert named.format(tmp=tmp_path) in message, message
