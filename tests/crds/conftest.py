"""A current kube-apiserver (built by scripts/build-kube-apiserver) on Debian's etcd, both on
127.0.0.1, with the project's CRDs installed: the CEL rules run where Kubernetes runs them. The
local test cluster is 1.20, which predates CEL."""

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
from kafka_checks import wait_until  # noqa: E402
from ports import free_port  # noqa: E402
from process import stop  # noqa: E402

TOKEN = "strom-cel-suite"
NAMESPACE = "default"


def decoded(raw):
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")}


class ApiServer:
    """Just enough of a Kubernetes client: JSON requests with a bearer token."""

    def __init__(self, port):
        self.base = f"https://127.0.0.1:{port}"
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate

    def request(self, method, path, body=None, content_type="application/json"):
        """(HTTP status, decoded JSON body; the text under "text" when it is not JSON)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=30) as r:
                return r.status, decoded(r.read())
        except urllib.error.HTTPError as e:
            return e.code, decoded(e.read())

    def ready(self):
        try:
            return self.request("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def plural_path(self, kind, name=None):
        plural = kind.lower() + "s"
        path = f"/apis/strom.dev/v1alpha1/namespaces/{NAMESPACE}/{plural}"
        return path if name is None else f"{path}/{name}"

    def create(self, obj):
        return self.request("POST", self.plural_path(obj["kind"]), obj)

    def merge_patch(self, kind, name, patch, subresource=""):
        path = self.plural_path(kind, name) + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, kind, name):
        return self.request("DELETE", self.plural_path(kind, name))


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory):
    """A ready API server with the CRDs of crds/ Established; stopped after the session."""
    binary = subprocess.run(
        [str(ROOT / "scripts" / "build-kube-apiserver")], check=True, capture_output=True, text=True
    ).stdout.strip()
    work = tmp_path_factory.mktemp("apiserver")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (work / "sa.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    (work / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    log = open(work / "etcd.log", "wb")
    etcd = subprocess.Popen(
        ["etcd", "--name", "cel", "--data-dir", str(work / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{client_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"cel=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    log = open(work / "apiserver.log", "wb")
    kube = subprocess.Popen(
        [binary, f"--etcd-servers=http://127.0.0.1:{client_port}", "--bind-address=127.0.0.1",
         f"--secure-port={api_port}", f"--cert-dir={work / 'certs'}",
         "--service-account-issuer=https://kubernetes.default.svc",
         f"--service-account-key-file={work / 'sa.key'}",
         f"--service-account-signing-key-file={work / 'sa.key'}",
         f"--token-auth-file={work / 'tokens.csv'}", "--authorization-mode=AlwaysAllow",
         "--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
         "--enable-priority-and-fairness=false"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    api = ApiServer(api_port)
    try:
        wait_until(api.ready, 120, "the API server's /readyz", interval=0.5)
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            status, body = api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            assert status == 201, f"{path.name} refused: {body.get('message')}"
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            name = path.name.removesuffix(".yaml")

            def established(name=name):
                _, crd = api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                return any(c["type"] == "Established" and c["status"] == "True"
                           for c in crd.get("status", {}).get("conditions", []))

            wait_until(established, 60, f"{name} Established", interval=0.5)
        # Discovery of the new kinds lags Established by a moment.
        wait_until(lambda: api.request("GET", api.plural_path("KafkaCluster"))[0] == 200, 30,
                   "the KafkaCluster endpoint", interval=0.5)
        yield api
    finally:
        stop(kube)
        stop(etcd)
