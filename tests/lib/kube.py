"""kubectl helpers shared by the operator suite and the end-to-end suite."""

import functools
import json
import subprocess


def kubectl(*args, stdin=None, check=True, timeout=300):
    """Runs kubectl and returns its stdout; fails the test with stderr when `check`."""
    done = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@functools.cache
def _show_managed_fields():
    """kubectl 1.21+ hides managedFields unless asked; 1.20 shows them and lacks the flag."""
    return ["--show-managed-fields"] if "--show-managed-fields" in kubectl("get", "--help") else []


def get(kind, name, namespace):
    """The object as JSON (managed fields included), or None when it does not exist."""
    out = kubectl("-n", namespace, "get", kind, name, "-o", "json", "--ignore-not-found", *_show_managed_fields())
    return json.loads(out) if out.strip() else None


def items(kind, namespace, selector=None):
    """The objects of `kind` in `namespace`, optionally filtered by a label selector."""
    args = ["-n", namespace, "get", kind, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return json.loads(kubectl(*args))["items"]


def apply(manifest, namespace):
    """Applies a manifest given as a dict."""
    kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(manifest))
