"""Answers a server that follows the API reference, or deviates from it the way real servers do,
may give: a byte order mark, zero values left out (Go's ``omitempty``) or sent as ``null``, an
error code in a 200, errors in XML, a standard ``Retry-After``, a redirect.

Each is valid enough that the official SDK, or any JSON reader that is not strict, would get on
with it; the scanner must either read it exactly or fail that one listing saying what the server
did and what to do. The fleet and the harness are ``tests.hostile``'s.
"""

from __future__ import annotations

from pathlib import Path

from tests.hostile.harness import (
    BAD,
    EXIT_COMPLETE,
    assert_outcome,
    assert_records,
    assert_well_behaved,
    scan,
)
from tests.hostile.server import Call, HostileServer, Response, error_response, reshaped

BOM = b"\xef\xbb\xbf"
THROTTLED_USER = ("Throttling.User", "Request was denied due to user flow control.")


def on_svc_a_once(server: HostileServer, call: Call) -> bool:
    """The first request for svc-a's page in the bad region."""
    return (call.region, call.action, call.service, call.nth) == (BAD, "ListServiceInstances", "svc-a", 1)


# --- a byte order mark -----------------------------------------------------------------------------


def test_json_after_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Some gateways (IIS, .NET and Java filters) put a UTF-8 BOM before the JSON. Every answer here
    has one: the scan must read them all, exactly."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        return reshaped(server.honest(call), prefix=BOM)

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)


def test_a_throttle_after_a_byte_order_mark_is_still_a_throttle(tmp_path: Path) -> None:
    """A 400 ``Throttling.User`` behind a BOM: retried as the throttle it is, not refused as a bad
    request."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if on_svc_a_once(server, call):
            return reshaped(error_response(400, *THROTTLED_USER), prefix=BOM)
        return None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    assert run.summary["throttled"] >= 1, f"the answer was a throttle\n{run.explain()}"
