"""A local certificate authority for ``make run HTTPS=1`` (and the https test fixtures).

``ensure_tls_files(directory, names)`` keeps, under ``directory`` (``.local/tls/`` by default, git-ignored):

- ``ca.pem`` / ``ca-key.pem``: a self-signed CA, created once and reused, valid for 10 years, that
  may sign only for loopback names (``nameConstraints`` limits it to the names it was first asked
  for plus ``localhost``, ``*.test``, ``127.0.0.0/8`` and ``::1``): trusting it cannot
  let anyone who copies the key impersonate a public site;
- ``server.pem`` / ``server-key.pem``: a server certificate signed by the CA for ``127.0.0.1``,
  ``::1``, ``localhost`` and ``names``; re-issued when the names change or it nears expiry. Its key is
  kept, so the SPKI hash Chromium's ``--ignore-certificate-errors-spki-list`` takes stays the same.

Private keys are written with mode 0600. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("127.0.0.1", "::1", "localhost")
CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=397)  # the longest lifetime browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)
# Names the CA may ever sign for (a dNSName constraint covers the name and its subdomains, RFC 5280
# §4.2.1.10): loopback addresses, localhost and the reserved .test domain (RFC 6761 §6.2), plus
# whatever extra names it was created with.
PERMITTED_DOMAINS = ("localhost", "test")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path  # the server certificate followed by the CA's (the chain a server sends)
    server_key: Path

    def server_spki_hash(self) -> str:
        """base64(SHA-256(SubjectPublicKeyInfo)) of the server key: Chromium's
        ``--ignore-certificate-errors-spki-list`` format."""
        return spki_hash(x509.load_pem_x509_certificate(self.server_cert.read_bytes()))


def spki_hash(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.lower())


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, _private_pem(key))
    return key


def _create_ca(directory: Path, names: list[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Broker local run"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Broker local CA {os.urandom(4).hex()}"),
    ])
    dns = sorted({*PERMITTED_DOMAINS, *(n.lower() for n in names if not _is_ip(n))})
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    permitted += [x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
                  x509.IPAddress(ipaddress.ip_network("::1/128"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca-key.pem", _private_pem(key))
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _ca_permits(ca: x509.Certificate, name: str) -> bool:
    try:
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return True
    if _is_ip(name):
        address = ipaddress.ip_address(name)
        return any(isinstance(s, x509.IPAddress) and address in s.value
                   for s in constraints.permitted_subtrees or [])
    name = name.lower()
    return any(isinstance(s, x509.DNSName) and (name == s.value or name.endswith("." + s.value))
               for s in constraints.permitted_subtrees or [])


def _load_ca(directory: Path, names: list[str]):
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > SERVER_LIFETIME
        if fresh and all(_ca_permits(cert, n) for n in names) and isinstance(key, ec.EllipticCurvePrivateKey):
            return cert, key
    return _create_ca(directory, names)


def _server_current(path: Path, ca: x509.Certificate, names: set[str], key) -> bool:
    if not path.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    have |= set(san.get_values_for_type(x509.DNSName))
    return (
        cert.issuer == ca.subject
        and have == names
        and cert.public_key().public_numbers() == key.public_key().public_numbers()
        and cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    )


def issue_server_certificate(directory: Path, names: list[str], *, stem: str = "server") -> TlsFiles:
    """A server certificate (``{stem}.pem``, key ``{stem}-key.pem``) from the CA in ``directory``,
    creating the CA first when needed. ``names`` are DNS names or IP addresses."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    wanted = [*DEFAULT_NAMES, *(n.strip().lower() for n in names if n and n.strip())]
    ca, ca_key = _load_ca(directory, wanted)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    key = _load_or_create_key(key_path)
    canonical = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in wanted}
    if not _server_current(cert_path, ca, canonical, key):
        now = dt.datetime.now(dt.UTC)
        first_dns = next((n for n in wanted if not _is_ip(n)), "localhost")
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first_dns)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + SERVER_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in dict.fromkeys(wanted)]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                              + ca.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(ca_cert=directory / "ca.pem", server_cert=cert_path, server_key=key_path)


def ensure_tls_files(directory: Path, names: list[str]) -> TlsFiles:
    """The CA and the broker's server certificate (see the module docstring)."""
    return issue_server_certificate(directory, names, stem="server")
