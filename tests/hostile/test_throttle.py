"""A throttle answer asking for an hour's pause (issue 11).

Contract: every retry-after hint is capped at 60 s (``MAX_RETRY_AFTER_S``), in the rate limiter's
pause and in retry waits. The CLI has no knob to lower the cap, so this is the suite's one test
that waits a minute: the scan should take about 60 s, and must not take the hour.
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
from tests.hostile.server import Call, HostileServer, Response, error_response

ONE_HOUR_MS = 3_600_000
CAP_S = 60.0
#: The cap, plus the scan itself on a busy machine.
BOUND_S = CAP_S + 15.0


def test_a_one_hour_retry_after_is_capped_at_a_minute(tmp_path: Path) -> None:
    async def behave(server: HostileServer, call: Call) -> Response | None:
        if (call.region, call.action, call.service) != (BAD, "ListServiceInstances", "svc-a") or call.nth > 1:
            return None
        return error_response(
            429,
            "Throttling",
            "Request was denied due to request throttling.",
            headers={"x-acs-retry-after": str(ONE_HOUR_MS)},
        )

    server, run = scan(tmp_path, behave, timeout=BOUND_S + 15.0)
    bounded = run.killed is None and run.elapsed_s < BOUND_S
    assert bounded, (
        f"x-acs-retry-after of one hour must be capped at {CAP_S:.0f} s: the scan must end within "
        f"{BOUND_S:.0f} s\n{run.explain()}"
    )
    assert_well_behaved(run)
    assert_outcome(run, exit_code=EXIT_COMPLETE, complete=True)
    assert_records(run, server)
    assert run.summary["throttled"] >= 1, f"the throttle must be counted\n{run.explain()}"
    requests = server.count("ListServiceInstances", region=BAD, service="svc-a")
    assert requests == 2, f"svc-a: one throttled request, then one that succeeds; got {requests}"
