"""kcat against Debian's librdkafka 2.0.2 (a strict ApiVersions parser) and against the
librdkafka 2.16 bundled in the confluent-kafka wheel."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def librdkafka_216_dir(tmp_path_factory):
    """A directory whose librdkafka.so.1 is the one shipped with confluent-kafka."""
    site = Path(sys.prefix) / "lib"
    libs = glob.glob(str(site / "python3*/site-packages/confluent_kafka.libs/librdkafka-*.so.1"))
    assert libs, "confluent-kafka's bundled librdkafka not found"
    d = tmp_path_factory.mktemp("rdkafka216")
    (d / "librdkafka.so.1").symlink_to(libs[0])
    return d


@pytest.fixture(scope="module", params=["librdkafka-2.0.2", "librdkafka-2.16"])
def kcat_env(request, tmp_path_factory):
    env = dict(os.environ)
    if request.param == "librdkafka-2.16":
        env["LD_LIBRARY_PATH"] = str(librdkafka_216_dir(tmp_path_factory))
    return env


def kcat(env, *args, stdin=None):
    result = subprocess.run(
        ["kcat", *args], input=stdin, capture_output=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    return result


def test_librdkafka_version_is_the_one_intended(kcat_env):
    out = kcat(kcat_env, "-V").stdout.decode()
    expected = "librdkafka 2.16" if "LD_LIBRARY_PATH" in kcat_env else "librdkafka 2.0.2"
    assert expected in out, out


def test_metadata_lists_broker(broker, kcat_env):
    out = kcat(kcat_env, "-b", broker.bootstrap, "-L").stdout.decode()
    assert f"broker 1 at 127.0.0.1:{broker.port}" in out


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_with_keys_and_headers(broker, kcat_env, topic, codec):
    lines = "".join(f"k{i}:v{i}\n" for i in range(100)).encode()
    kcat(kcat_env, "-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-z", codec,
         "-H", "source=kcat", stdin=lines)
    out = kcat(kcat_env, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning",
               "-f", "%k|%s|%h|%o\n").stdout.decode().splitlines()
    assert len(out) == 100
    for i, line in enumerate(out):
        assert line == f"k{i}|v{i}|source=kcat|{i}"


def test_query_offsets_by_time(broker, kcat_env, topic):
    kcat(kcat_env, "-b", broker.bootstrap, "-P", "-t", topic, stdin=b"a\nb\nc\n")
    out = kcat(kcat_env, "-b", broker.bootstrap, "-Q", "-t", f"{topic}:0:0").stdout.decode()
    assert f"{topic} [0] offset 0" in out
