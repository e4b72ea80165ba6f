"""Servers that echo credentials back, and servers whose clock disagrees with ours (issue 11).

Redaction (contract): any server-derived text is redacted before it reaches an exception, a log,
the summary or a record: AccessKeyIds masked as ``LTAI****wxyz``, the secret and the STS token of
the credentials in use removed, whatever their position. The scans here run with ``-v`` (debug
logging), so nothing can hide in a log line either.

Clock skew (contract): ``InvalidTimeStamp.Expired`` (or a signature error while the server's
``Date`` is more than 5 minutes off ours) says how far off the local clock is and how to fix it,
and is never retried.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from tests.hostile.harness import (
    BAD,
    EXIT_COMPLETE,
    EXIT_FATAL,
    EXIT_INCOMPLETE,
    GOOD,
    KEY_ID,
    MASKED_KEY_ID,
    REGIONS,
    SECRET,
    TOKEN,
    ScanRun,
    assert_failure,
    assert_outcome,
    assert_records,
    assert_region,
    assert_well_behaved,
    scan,
)
from tests.hostile.server import (
    Behaviour,
    Call,
    HostileServer,
    Response,
    error_response,
    expected_record,
    raw_response,
)


def _echo(call: Call) -> str:
    """The request's headers, as a debugging gateway prints them back."""
    return "; ".join(f"{name}: {value}" for name, value in call.headers.items())


class Echo:
    """Behaviours that put the credentials of the request into their answers."""

    def __init__(self) -> None:
        #: Everything echoed, to prove the test is not vacuous (the secrets really were sent back).
        self.echoed: list[str] = []

    def _svc_a(self, call: Call) -> bool:
        return (call.region, call.action, call.service) == (BAD, "ListServiceInstances", "svc-a")

    async def json_error(self, server: HostileServer, call: Call) -> Response | None:
        if not self._svc_a(call):
            return None
        text = f"Invalid request. Received headers: {_echo(call)}. Debug: AccessKeySecret={SECRET}"
        self.echoed.append(text)
        return error_response(400, "InvalidParameter", text)

    async def key_in_list_services(self, server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action) != (BAD, "ListServices"):
            return None
        # The key id first, the token last: "whatever their position in the text".
        text = f"{KEY_ID} is not found (with SecurityToken {TOKEN})"
        self.echoed.append(text)
        return error_response(404, "InvalidAccessKeyId.NotFound", text)

    async def html_error(self, server: HostileServer, call: Call) -> Response | None:
        if not self._svc_a(call):
            return None
        text = (
            f"<html><head><title>502</title></head><body>token={TOKEN} key={KEY_ID} secret={SECRET}"
            f"<pre>{_echo(call)}</pre></body></html>"
        )
        self.echoed.append(text)
        return raw_response(text.encode(), status=502, content_type="text/html")

    async def header(self, server: HostileServer, call: Call) -> Response | None:
        if not self._svc_a(call):
            return None
        # No RequestId in the body: a client falls back to the x-acs-request-id header.
        request_id = f"{TOKEN} {KEY_ID}"
        self.echoed.append(request_id)
        body = b'{"Code":"ServiceUnavailable","Message":"The request has failed due to a temporary failure."}'
        return raw_response(body, status=503, headers={"x-acs-request-id": request_id})


@pytest.mark.parametrize(
    ("behaviour", "region_level", "code", "masked"),
    [
        ("json_error", False, "InvalidParameter", True),
        ("key_in_list_services", True, "InvalidAccessKeyId.NotFound", True),
        ("html_error", False, None, False),
        ("header", False, None, False),
    ],
    ids=[
        "JSON error echoing the headers",
        "key id in ListServices' error",
        "HTML 502 echoing",
        "x-acs-request-id",
    ],
)
def test_credentials_echoed_in_an_error_appear_nowhere(
    tmp_path: Path, behaviour: str, region_level: bool, code: str | None, masked: bool
) -> None:
    echo = Echo()
    server, run = scan(tmp_path, getattr(echo, behaviour), extra=["-v"])
    echoed = "\n".join(echo.echoed)
    for sent in (TOKEN, KEY_ID):
        assert sent in echoed, f"the test must echo {sent!r} back: {echoed[:300]}"
    # assert_well_behaved: neither the secret, the token, nor the full key id in any output.
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(
        run, region=BAD, service=None if region_level else "svc-a", codes=[code] if code else None
    )
    assert_region(run, GOOD, complete=True)
    if region_level:
        assert_records(run, server, none_of=[(BAD, s.name) for s in server.fleet[BAD]])
    else:
        assert_records(run, server, none_of=[(BAD, "svc-a")])
    if masked:
        assert MASKED_KEY_ID in str(failure["message"]), (
            f"the key id must be masked as {MASKED_KEY_ID} (not dropped), got {failure['message']!r}"
        )


def test_credentials_inside_a_page_are_redacted_from_the_records(tmp_path: Path) -> None:
    """A page whose instance carries the secret and the token (a misconfigured env dump)."""

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) != (BAD, "ListServiceInstances", "svc-a"):
            return None
        first, *rest = server.service(BAD, "svc-a").instances
        tainted = {**first, "Reason": f"env: ALIBABA_CLOUD_SECURITY_TOKEN={TOKEN} SECRET={SECRET}"}
        return server.instances_page(call, [tainted, *rest], total=4)

    server, run = scan(tmp_path, behave, extra=["-v"])
    assert_well_behaved(run)  # neither secret nor token in the -o file
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server, skip=[(BAD, "svc-a")])
    service = server.service(BAD, "svc-a")
    written = {
        r["InstanceName"]: r for r in run.records() if (r["ClusterId"], r["ServiceName"]) == (BAD, "svc-a")
    }
    assert sorted(written) == sorted(i["InstanceName"] for i in service.instances), (
        f"every instance of svc-a must still be written, once: got {sorted(written)}"
    )
    for instance in service.instances:
        expected = expected_record(BAD, service, instance)
        got = written[instance["InstanceName"]]
        if instance is service.instances[0]:
            expected.pop("Reason"), got.pop("Reason")  # redacted: only the secret bytes may differ
        assert got == expected, f"records must stay untouched apart from the redaction:\n{expected}\n{got}"


EXPIRED = "Specified time stamp or date value is expired."
MISMATCH = "Specified signature is not matched with our calculation."


def _skewed(code: str, offset: timedelta | None, regions: tuple[str, ...] = REGIONS) -> Behaviour:
    """Refuse every request of ``regions`` with ``code``, the server's Date ``offset`` from ours."""
    message = EXPIRED if code.startswith("InvalidTimeStamp") else MISMATCH

    async def behave(server: HostileServer, call: Call) -> Response | None:
        if call.region not in regions:
            return None
        if offset is None:
            return error_response(400, code, message, headers={"Date": "not a date"})
        server_date = format_datetime(datetime.now(UTC) + offset, usegmt=True)
        return error_response(400, code, message, headers={"Date": server_date})

    return behave


def _twenty_minutes(sign: int) -> timedelta:
    # 10 s more than the 20 minutes: HTTP dates drop the fraction of a second, and the answer takes
    # a moment to arrive, so an exact 20 minutes could measure as 19 min 59.x s.
    return sign * timedelta(minutes=20, seconds=10)


@pytest.mark.parametrize(
    ("code", "sign", "direction"),
    [
        ("InvalidTimeStamp.Expired", 1, "behind"),
        ("InvalidTimeStamp.Expired", -1, "ahead"),
        ("SignatureDoesNotMatch", 1, "behind"),
    ],
    ids=["Expired, local clock behind", "Expired, local clock ahead", "SignatureDoesNotMatch, skewed Date"],
)
def test_clock_skew_is_named_with_its_size_and_not_retried(
    tmp_path: Path, code: str, sign: int, direction: str
) -> None:
    """Every region refuses the timestamp (the local clock is wrong): fatal, exit 1 (README)."""
    server, run = scan(tmp_path, _skewed(code, _twenty_minutes(sign)))
    assert_well_behaved(run)
    for region in REGIONS:
        requests = server.count(region=region)
        assert requests == 1, f"a clock-skew refusal is never retried: {region} got {requests} requests"
    assert_outcome(run, exit_code=EXIT_FATAL, complete=False)
    _assert_names_the_skew(run, direction)
    failure = assert_failure(run, region=BAD, service=None, codes=[code])
    message = str(failure["message"])
    for part in ("clock", "20 minutes", direction):
        assert part in message, (
            f"the failure must say the local clock is 20 minutes {direction} the server's, got {message!r}"
        )


def _assert_names_the_skew(run: ScanRun, direction: str) -> None:
    for part in ("clock", "20 minutes", direction, "NTP"):
        assert part in run.stderr, (
            f"stderr must say the local clock is 20 minutes {direction} the server's and how to fix it "
            f"(contract: ...set the system clock (e.g. enable NTP)...); {part!r} is missing\n{run.explain()}"
        )


def test_clock_skew_in_one_region_fails_that_region_only(tmp_path: Path) -> None:
    """Only one region's endpoint (a proxy with its own clock, say) disagrees: exit 3, not fatal."""
    server, run = scan(tmp_path, _skewed("InvalidTimeStamp.Expired", _twenty_minutes(1), (BAD,)))
    assert_well_behaved(run)
    requests = server.count(region=BAD)
    assert requests == 1, f"a clock-skew refusal is never retried: {BAD} got {requests} requests"
    assert_outcome(run, exit_code=EXIT_INCOMPLETE, complete=False)
    failure = assert_failure(run, region=BAD, service=None, codes=["InvalidTimeStamp.Expired"])
    for part in ("clock", "20 minutes", "behind"):
        assert part in str(failure["message"]), f"the failure must name the skew, got {failure['message']!r}"
    assert_region(run, GOOD, complete=True)
    assert_records(run, server, none_of=[(BAD, s.name) for s in server.fleet[BAD]])


def test_an_expired_timestamp_without_a_usable_date_still_points_at_the_clock(tmp_path: Path) -> None:
    """``Date: not a date``: no skew to measure, but the advice stands (contract: "...check that
    the local clock is right (NTP)"), without a traceback from parsing the date."""
    server, run = scan(tmp_path, _skewed("InvalidTimeStamp.Expired", None))
    assert_well_behaved(run)
    for region in REGIONS:
        requests = server.count(region=region)
        assert requests == 1, f"a refused timestamp is never retried: {region} got {requests} requests"
    assert_outcome(run, exit_code=EXIT_FATAL, complete=False)
    for part in ("clock", "NTP"):
        assert part in run.stderr, (
            f"stderr must point at the local clock (NTP): {part!r} missing\n{run.explain()}"
        )
