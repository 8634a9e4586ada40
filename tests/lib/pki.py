"""A throwaway PKI for the security suites, made with `cryptography`: a lone CA for the
operator suite's user-provided clients CA (`certificate_authority`), and for the broker's
security suite (`make_pki`) a CA, a second CA that
nothing trusts, a broker certificate (CN=broker, SAN localhost and 127.0.0.1, usable as server
and as client for inter-broker and controller connections), one such certificate per cluster
node (CN=strom-1 to strom-3), its renewal (CN=broker-renewed,
same names, new key and serial) for the certificate reload test, client certificates CN=admin
and CN=alice from the CA, and an impostor CN=admin from the other CA.

Every identity is written three ways: the certificate, the PKCS#8 key, and Kafka's PEM keystore
(key and certificate in one file). The truststore is the CA's certificate."""

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    """One certificate and its key, as files."""

    cn: str
    cert: Path
    key: Path
    keystore: Path

    @property
    def principal(self):
        """The default SSL principal Kafka derives from this certificate's subject (RFC 2253)."""
        return f"User:CN={self.cn}"

    def pem_key(self):
        return self.key.read_text()

    def pem_cert(self):
        return self.cert.read_text()


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    broker: Identity
    renewed_broker: Identity
    admin: Identity
    alice: Identity
    impostor: Identity
    nodes: tuple

    def context(self, identity=None):
        """A Python client TLS context that trusts the CA, checks the broker's name and presents
        `identity`'s certificate when one is given."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if identity is not None:
            ctx.load_cert_chain(str(identity.keystore))
        return ctx

    def rdkafka_ssl(self, identity=None):
        """librdkafka (confluent-kafka, kcat) settings for SSL with `identity`'s certificate."""
        conf = {"security.protocol": "SSL", "ssl.ca.location": str(self.ca)}
        if identity is not None:
            conf["ssl.certificate.location"] = str(identity.cert)
            conf["ssl.key.location"] = str(identity.key)
        return conf


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


def _key_usage(*allowed):
    return x509.KeyUsage(**{usage: usage in allowed for usage in _USAGES})


class _Authority:
    def __init__(self, cn):
        self.key = _key()
        self.name = _name(cn)
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, cn, dns=(), ips=()):
        """A leaf certificate for serverAuth and clientAuth, and its key."""
        key = _key()
        builder = (
            _builder(_name(cn), self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage("digital_signature", "key_encipherment"), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(directory, name, cert, key):
    paths = [directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.keystore.pem"]
    paths[0].write_bytes(_pem_cert(cert))
    paths[1].write_bytes(_pem_key(key))
    paths[2].write_bytes(_pem_key(key) + _pem_cert(cert))
    for p in paths[1:]:
        p.chmod(0o600)
    return Identity(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, *paths)


# The names a broker certificate is valid for.
_BROKER_NAMES = {"dns": ["localhost"], "ips": ["127.0.0.1"]}


def make_pki(directory):
    """Generates the whole PKI into `directory` and returns where everything is."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = _Authority("Strom test CA"), _Authority("Unrelated test CA")
    (directory / "ca.pem").write_bytes(_pem_cert(ca.cert))
    (directory / "other-ca.pem").write_bytes(_pem_cert(other.cert))
    return Pki(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        broker=_write(directory, "broker", *ca.issue("broker", **_BROKER_NAMES)),
        renewed_broker=_write(directory, "broker-renewed", *ca.issue("broker-renewed", **_BROKER_NAMES)),
        admin=_write(directory, "admin", *ca.issue("admin")),
        alice=_write(directory, "alice", *ca.issue("alice")),
        impostor=_write(directory, "impostor", *other.issue("admin")),
        nodes=tuple(_write(directory, f"strom-{i}", *ca.issue(f"strom-{i}", **_BROKER_NAMES)) for i in (1, 2, 3)),
    )


def certificate_authority(cn):
    """A self-signed CA (RSA 2048): its certificate and PKCS#8 key, both PEM text."""
    authority = _Authority(cn)
    return _pem_cert(authority.cert).decode(), _pem_key(authority.key).decode()
