"""An https endpoint whose certificate the scanner does not trust: a TLS-inspecting corporate proxy,
a private gateway, a VPC endpoint behind its own CA. The error must say so and how to fix it, and
the fix it names must work."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from tests.certs import self_signed
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


def test_an_untrusted_certificate_is_named_with_the_fix_and_the_fix_works(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "127.0.0.1", stem="gateway")
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
