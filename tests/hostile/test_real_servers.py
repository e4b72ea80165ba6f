"""Answers a server that follows the API reference, or deviates from it the way real servers do,
may give: a byte order mark, zero values left out (Go's ``omitempty``) or sent as ``null``, an
error code in a 200, errors in XML, a standard ``Retry-After``, a redirect.

Each is valid enough that the official SDK, or any JSON reader that is not strict, would get on
with it; the scanner must either read it exactly or fail that one listing saying what the server
did and what to do. The fleet and the harness are ``tests.hostile``'s.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import orjson
import pytest

from scanner.output.parquet import read_records
from tests.hostile.harness import (
    BAD,
    EXIT_COMPLETE,
    EXIT_INCOMPLETE,
    GOOD,
    SIZES,
    assert_failure,
    assert_outcome,
    assert_records,
    assert_region,
    assert_well_behaved,
    key_of,
    run_scan,
    scan,
)
from tests.hostile.server import (
    Call,
    HostileServer,
    Response,
    error_response,
    expected_record,
    json_response,
    make_fleet,
    raw_response,
    reshaped,
    xml_error_response,
)

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


# --- an error code in a 200 ------------------------------------------------------------------------


def _error_in_a_200(code: str, message: str) -> Response:
    return error_response(200, code, message)


def test_a_throttle_answered_with_status_200_is_a_throttle(tmp_path: Path) -> None:
    """Some gateways answer every request 200 and say the error in the body. A ``Throttling.User``
    there is a throttle: slowed down for and retried, not a page to decode."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        return _error_in_a_200(*THROTTLED_USER) if on_svc_a_once(server, call) else None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    assert run.summary["throttled"] >= 1, f"the answer was a throttle\n{run.explain()}"


def test_a_refusal_answered_with_status_200_fails_with_its_code_unretried(tmp_path: Path) -> None:
    """A ``Forbidden.RAM`` in a 200: the service fails with the server's code and words (the fix is
    a permission), once, instead of a retried 'TotalCount is missing'."""
    message = "User not authorized to operate on the specified resource."

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a"):
            return _error_in_a_200("Forbidden.RAM", message)
        return None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service="svc-a", codes=["Forbidden.RAM"])
    assert message in str(failure["message"]), f"the server's message must be shown: {failure}"
    assert_records(run, server, none_of=[(BAD, "svc-a")])
    requests = server.count("ListServiceInstances", region=BAD, service="svc-a")
    assert requests == 1, f"a refusal is not retried: expected 1 request, got {requests}"


# --- zero values left out, or null ---------------------------------------------------------------

EMPTY_REGION = "cn-beijing"
_ZERO: tuple[Any, ...] = (0, "", [], {}, False, None)


def _omitempty(data: Any) -> Any:
    """What Go's encoding/json sends for a struct whose fields are all ``omitempty``: zero values
    (``TotalCount: 0``, an empty ``Instances``) are left out."""
    return {key: value for key, value in data.items() if not any(value is z or value == z for z in _ZERO)}


def _nulls(data: Any) -> Any:
    """What a server with pointer fields left unset sends: ``null`` for the zero values, and for
    the echoed paging (which it never filled in)."""
    nulled = {
        key: None if any(value is z or value == z for z in _ZERO) else value for key, value in data.items()
    }
    return {**nulled, "PageNumber": None, "PageSize": None}


def _paging_zero(data: Any) -> Any:
    """What a server sends that never fills in the echo of the paging (a Go struct without
    ``omitempty``): ``PageNumber`` and ``PageSize`` 0, which no page can have."""
    return {**data, "PageNumber": 0, "PageSize": 0}


def _paging_text(data: Any) -> Any:
    """What a server sends that echoes the paging straight from the query string: text."""
    return {**data, "PageNumber": str(data["PageNumber"]), "PageSize": str(data["PageSize"])}


@pytest.mark.parametrize(
    "shape",
    [_omitempty, _nulls, _paging_zero, _paging_text],
    ids=["zero values left out", "zero values null", "paging echoed as 0", "paging echoed as text"],
)
def test_pages_in_the_shapes_other_servers_send_are_read_exactly(tmp_path: Path, shape: Any) -> None:
    """Every answer in one server's shape; the fleet has an empty service in every region and a
    region without services: complete, every record exact. (An answer with items and no TotalCount
    is still refused, and so is a TotalCount that is not a JSON integer: tests/test_client.py.)"""
    regions = (BAD, GOOD, EMPTY_REGION)
    fleet = make_fleet(regions, {**SIZES, "svc-empty": 0})
    fleet[EMPTY_REGION] = []

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if call.action not in ("ListServices", "ListServiceInstances"):
            return None
        return reshaped(server.honest(call), data=shape)

    with HostileServer(fleet, behave) as server:
        run = run_scan(server, tmp_path, regions=regions)
    assert not server.errors, server.errors
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    assert run.summary["regions"][EMPTY_REGION]["complete"] is True, run.explain()


# --- errors in XML -------------------------------------------------------------------------------


def test_a_throttle_in_xml_is_a_throttle(tmp_path: Path) -> None:
    """Alibaba's gateways can answer an error in XML (``text/xml``; the SDK reads those): a
    ``Throttling.User`` there is retried, not refused as a bad request."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        return xml_error_response(400, *THROTTLED_USER) if on_svc_a_once(server, call) else None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    assert run.summary["throttled"] >= 1, f"the answer was a throttle\n{run.explain()}"


def test_a_refusal_in_xml_fails_with_its_code_and_message(tmp_path: Path) -> None:
    message = "User not authorized to operate on the specified resource."

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a"):
            return xml_error_response(403, "Forbidden.RAM", message)
        return None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service="svc-a", codes=["Forbidden.RAM"])
    assert failure["message"] == message, f"the server's message, as it said it: {failure}"
    assert_records(run, server, none_of=[(BAD, "svc-a")])


# --- a standard Retry-After ----------------------------------------------------------------------

#: How long the gateway below refuses svc-a after its first refusal.
REFUSED_FOR_S = 8.0


def _refusing_for(status: int, hint: str) -> Any:
    """svc-a refused with ``status`` and ``Retry-After`` for ``REFUSED_FOR_S`` after the first refusal
    (a gateway's limiter, an upstream restarting), honest after that."""
    started: list[float] = []

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) != (BAD, "ListServiceInstances", "svc-a"):
            return None
        now = time.monotonic()
        if not started:
            started.append(now)
        if now - started[0] >= REFUSED_FOR_S:
            return None
        retry_after = hint if hint != "date" else formatdate(time.time() + REFUSED_FOR_S, usegmt=True)
        body = {"RequestId": "GW", "Code": "Throttling" if status == 429 else "ServiceUnavailable"}
        return json_response(body, status=status, headers={"Retry-After": retry_after})

    return behave


@pytest.mark.parametrize(
    ("status", "hint"),
    [(429, str(int(REFUSED_FOR_S))), (429, "date"), (503, str(int(REFUSED_FOR_S)))],
    ids=["429, seconds", "429, an HTTP date", "503, seconds"],
)
def test_a_standard_retry_after_is_waited_for(tmp_path: Path, status: int, hint: str) -> None:
    """Gateways and proxies (Envoy, Cloudflare, nginx configurations) say how long to wait in the
    standard ``Retry-After`` (seconds, or an HTTP date), not in ``x-acs-retry-after``. With
    --max-attempts 2, a retry that does not wait for it is refused again and the service fails."""
    server, run = scan(tmp_path, _refusing_for(status, hint))
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    requests = server.count("ListServiceInstances", region=BAD, service="svc-a")
    assert requests == 2, f"svc-a: one refusal, then one request after the wait; got {requests}"


# --- a service entry without a usable name ------------------------------------------------------


def _first_service_named(value: Any) -> Any:
    """svc-a's ListServices entry in the bad region with its ServiceName replaced (or removed)."""

    def shape(data: Any) -> Any:
        services = [dict(service) for service in data.get("Services") or []]
        for service in services:
            if service.get("ServiceName") == "svc-a":
                if value is _REMOVED:
                    del service["ServiceName"]
                else:
                    service["ServiceName"] = value
        return {**data, "Services": services}

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action) == (BAD, "ListServices"):
            return reshaped(server.honest(call), data=shape)
        return None

    return behave


_REMOVED = object()


@pytest.mark.parametrize(
    "name", [_REMOVED, None, 123, ""], ids=["ServiceName missing", "null", "a number", "empty"]
)
def test_a_service_without_a_usable_name_fails_that_region_and_only_it(tmp_path: Path, name: Any) -> None:
    """The API says the region has 3 services; one has no name to list it by. Its instances cannot
    be read, so the region is incomplete with a failure saying why; the other region, and the
    other services, are scanned exactly."""
    server, run = scan(tmp_path, _first_service_named(name))
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    assert_region(run, BAD, complete=False)
    assert_region(run, GOOD, complete=True)
    assert_records(run, server, none_of=[(BAD, "svc-a")])


# --- an HTML page with status 200 ---------------------------------------------------------------

CAPTIVE_PORTAL = (
    b"<!DOCTYPE html><html><head><title>Network login</title></head><body>"
    b"<h1>Sign in to the guest network to continue</h1><form>...</form></body></html>"
)


def test_an_html_page_answered_200_is_shown_in_the_error(tmp_path: Path) -> None:
    """A captive portal, a WAF challenge or a proxy's login page answers 200 with HTML. The failure
    must show what the page says (as an error answer's does), not only that it is not JSON."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a"):
            return raw_response(CAPTIVE_PORTAL, status=200, content_type="text/html; charset=utf-8")
        return None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service="svc-a")
    message = str(failure["message"])
    for part in ('HTTP 200 with a non-JSON body (text/html): "', "Sign in to the guest network"):
        assert part in message, f"the error must show the page ({part!r}); got {message!r}"
    assert "<" not in message, f"the page's tags are collapsed, as in an error answer's snippet: {message!r}"
    assert_records(run, server, none_of=[(BAD, "svc-a")])


# --- a Content-Encoding that was not asked for -----------------------------------------------------


def test_a_body_compressed_in_an_encoding_not_asked_for_is_named_not_called_a_400(tmp_path: Path) -> None:
    """A CDN or proxy that compresses with Brotli although the request accepts only gzip and
    deflate: the error names the encoding; it must not read as an HTTP 400 the server never sent."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a"):
            return raw_response(b"\x1b\x03\x00\xf8\x25\x00", headers={"Content-Encoding": "br"})
        return None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service="svc-a")
    message = str(failure["message"])
    for part in ("Content-Encoding", "br"):
        assert part in message, f"the encoding must be named ({part!r}): {message!r}"
    assert "400" not in message, f"the server answered 200, not 400: {message!r}"
    assert_records(run, server, none_of=[(BAD, "svc-a")])


# --- numbers a float column cannot hold exactly (Parquet) ------------------------------------------


def test_an_integer_beyond_a_doubles_precision_in_a_float_field_is_kept_in_parquet(tmp_path: Path) -> None:
    """``CurrentAmount`` is a float in the SDK's model; a server (or a proxy re-encoding JSON) may
    send any JSON number there, an integer past 2**53 too. A Parquet scan must keep it, exactly (in
    ``extra``), not end with a traceback and no file."""
    huge = 2**53 + 1

    def shape(data: Any) -> Any:
        return {**data, "Instances": [{**item, "CurrentAmount": huge} for item in data["Instances"]]}

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a"):
            for instance in server.service(BAD, "svc-a").instances:
                instance["CurrentAmount"] = huge  # what the records must hold
            return reshaped(server.honest(call), data=shape)
        return None

    server, run = scan(tmp_path, behave, extra=["--format", "parquet"])
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    output = tmp_path / "out" / "fleet.jsonl"  # the harness's -o path, whatever the format
    written = {key_of(record): record for record in read_records(output)}
    expected = {
        (region, service.name, instance["InstanceName"]): expected_record(region, service, instance)
        for region, services in server.fleet.items()
        for service in services
        for instance in service.instances
    }
    assert set(written) == set(expected)
    for key, record in expected.items():
        back = {
            name: value for name, value in written[key].items() if name != "AccountId" or value is not None
        }
        assert orjson.dumps(back, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
            record, option=orjson.OPT_SORT_KEYS
        ), key


# --- an answer in another shape ------------------------------------------------------------------


def test_an_answer_with_other_key_names_fails_naming_the_keys_it_had(tmp_path: Path) -> None:
    """A server (or a gateway in front of it) that renames the keys (``totalCount``, ``instances``:
    camelCase, as some Alibaba APIs do). The listing must fail, not pass as empty, and the error
    should show what the answer had instead, so the mismatch is seen at once."""

    def camel(data: Any) -> Any:
        return {key[0].lower() + key[1:]: value for key, value in data.items()}

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a"):
            return reshaped(server.honest(call), data=camel)
        return None

    server, run = scan(tmp_path, behave)
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service="svc-a")
    message = str(failure["message"])
    for part in ("TotalCount", "totalCount", "instances"):
        assert part in message, f"the error must name what was missing and what came ({part!r}): {message!r}"
    assert_records(run, server, none_of=[(BAD, "svc-a")])
