"""An https endpoint whose certificate the scanner does not trust: a TLS-inspecting corporate proxy,
a private gateway, a VPC endpoint behind its own CA. The error must say so and how to fix it, and
the fix it names must work."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.hostile.harness import (
    EXIT_COMPLETE,
    EXIT_FATAL,
    GOOD,
    REGIONS,
    SIZES,
    assert_failure,
    assert_outcome,
    assert_records,
    assert_well_behaved,
    run_scan,
)
from tests.hostile.server import HostileServer, make_fleet

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a CA-less certificate for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile gateway CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "gateway.pem", folder / "gateway.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_an_untrusted_certificate_is_named_with_the_fix_and_the_fix_works(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with HostileServer(make_fleet(REGIONS, SIZES), tls=tls) as server:
        refused = run_scan(server, tmp_path / "refused")
        trusted = run_scan(server, tmp_path / "trusted", env={"SSL_CERT_FILE": str(cert)})
    assert not server.errors, server.errors

    assert_well_behaved(refused)
    assert_outcome(refused, exit_code=EXIT_FATAL, complete=False)
    failure = assert_failure(refused, region=GOOD, service=None)
    message = str(failure["message"])
    for part in ("certificate", "not trusted", "SSL_CERT_FILE"):
        assert part in message, f"the error must name the certificate and the fix ({part!r}): {message!r}"

    assert_well_behaved(trusted)
    assert_outcome(trusted, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(trusted, server)
