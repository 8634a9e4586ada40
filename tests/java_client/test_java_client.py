"""Kafka's Java client (kafka-clients, pinned in pom.xml) against Strom: Maven runs the JUnit 5
tests under src/test/java once against the session's single node and 3-node cluster, and each
JUnit test is one pytest test here, passing or failing with the message JUnit reported.

Maven's build output goes under ${STROM_CACHE:-~/.cache/strom}/java_client/target; the plugins
and dependencies come from the local Maven repository that scripts/install-test-deps.sh fills."""

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src" / "test" / "java"
TARGET = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "java_client" / "target"
MAVEN_TIMEOUT = 600


def junit_tests():
    """Class.method of every @Test method in the JUnit sources."""
    found = []
    for source in sorted(SOURCES.rglob("*Test.java")):
        text = source.read_text()
        for method in re.findall(r"@Test\b(?:\s+@\w+(?:\([^)]*\))?)*\s+(?:public\s+)?void\s+(\w+)\s*\(", text):
            found.append(f"{source.stem}.{method}")
    return found


@pytest.fixture(scope="session")
def junit_results(single, cluster):
    """Runs the JUnit tests once; {Class.method: (outcome, message)} from Surefire's XML reports."""
    reports = TARGET / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)
    cmd = ["nice", "-n", "10", "mvn", "-B", "-q", "-f", str(HERE / "pom.xml"), "test",
           f"-Dstrom.build.dir={TARGET}",
           f"-Dstrom.single={single.bootstrap}",
           f"-Dstrom.single.logdir={single.data_dir}",
           f"-Dstrom.cluster={cluster.bootstrap}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=MAVEN_TIMEOUT, stdin=subprocess.DEVNULL)
    results = {}
    for report in sorted(reports.glob("TEST-*.xml")):
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{case.get('classname').rsplit('.', 1)[-1]}.{case.get('name')}"
            outcome, message = "passed", ""
            for kind in ("failure", "error", "skipped"):
                element = case.find(kind)
                if element is not None:
                    outcome = kind
                    message = (element.text or f"{element.get('type', '')}: {element.get('message', '')}").strip()
                    break
            results[name] = (outcome, message)
    if not results:
        pytest.fail(f"Maven ran no test (exit {done.returncode}):\n{done.stdout[-5000:]}\n{done.stderr[-5000:]}")
    return results


@pytest.mark.parametrize("name", junit_tests())
def test_junit(junit_results, name):
    if name not in junit_results:
        pytest.fail(f"JUnit did not report {name}; it reported {sorted(junit_results)}", pytrace=False)
    outcome, message = junit_results[name]
    if outcome != "passed":
        pytest.fail(f"{name}: {outcome}\n{message}", pytrace=False)
