"""TLS contexts for the TLS and WSS listening points and for TLS next hops.

Certificates come from PEM files (``certFile``, ``keyFile``, ``caFile``) or from Routr's
PKCS#12 key and trust stores; with neither, a self-signed certificate is made once in
the data directory (``tls/cert.pem``, ``tls/key.pem``) so that TLS works out of the box.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sipgrid.config import ConfigError

from .config import SecurityContext

log = logging.getLogger("sipgrid.edgeport")

FIELD = "spec.securityContext"


def server_context(
    security: SecurityContext, data_dir: Path, names: list[str], where: str = "edgeport.yaml"
) -> ssl.SSLContext:
    """The context TLS and WSS listening points serve with."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if security.cert_file or security.key_file:
            if not (security.cert_file and security.key_file):
                raise ConfigError(f"{where}: field {FIELD}: certFile and keyFile go together")
            context.load_cert_chain(security.cert_file, security.key_file)
        elif security.key_store:
            _load_key_store(context, security, where)
        else:
            cert, key = self_signed(data_dir, names)
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError, ValueError) as error:
        raise ConfigError(f"{where}: field {FIELD}: cannot load the certificate: {error}") from None
    _load_trust(context, security, where)
    auth = security.client.auth_type
    if auth in ("Enabled", "Want"):
        if not (security.ca_file or security.trust_store):
            raise ConfigError(
                f"{where}: field {FIELD}.client.authType: {auth} needs caFile or trustStore"
            )
        context.verify_mode = ssl.CERT_REQUIRED if auth == "Enabled" else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_context(security: SecurityContext, where: str = "edgeport.yaml") -> ssl.SSLContext:
    """The context for TLS connections sipgrid opens (to phones, trunks, peers): the next
    hop's certificate is checked when a trust store is configured (or verifyServer is
    true), as most SIP providers and phones use certificates no public CA signed."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    verify = security.verify_server
    if verify is None:
        verify = bool(security.ca_file or security.trust_store)
    if verify:
        _load_trust(context, security, where)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_trust(context: ssl.SSLContext, security: SecurityContext, where: str) -> None:
    try:
        if security.ca_file:
            context.load_verify_locations(cafile=security.ca_file)
        if security.trust_store:
            data = Path(security.trust_store).read_bytes()
            store = pkcs12.load_pkcs12(data, security.trust_store_password.encode() or None)
            certs = [c.certificate for c in store.additional_certs]
            if store.cert is not None:
                certs.append(store.cert.certificate)
            pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
            if pem:
                context.load_verify_locations(cadata=pem)
    except (OSError, ssl.SSLError, ValueError) as error:
        raise ConfigError(f"{where}: field {FIELD}: cannot load the trust store: {error}") from None


def _load_key_store(context: ssl.SSLContext, security: SecurityContext, where: str) -> None:
    """A PKCS#12 key store: its key and chain, through a private temporary file that is
    gone as soon as the context holds them (ssl loads chains from files only)."""
    assert security.key_store is not None
    data = Path(security.key_store).read_bytes()
    key, cert, chain = pkcs12.load_key_and_certificates(
        data, security.key_store_password.encode() or None
    )
    if key is None or cert is None:
        raise ConfigError(f"{where}: field {FIELD}.keyStore: no private key and certificate in it")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "chain.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        context.load_cert_chain(path)


def self_signed(data_dir: Path, names: list[str]) -> tuple[Path, Path]:
    """The certificate and key made at first start for these names (kept for later starts)."""
    directory = data_dir / "tls"
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[x509.GeneralName] = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "sipgrid")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    print(
        f"sipgrid: made a self-signed TLS certificate for {', '.join(names) or 'sipgrid'} "
        f"in {cert_path} (set spec.securityContext to use your own)",
        flush=True,
    )
    return cert_path, key_path
