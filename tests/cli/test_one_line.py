"""Where stderr is not a terminal (a log file, a pipe, journald), each summary line and each failure is
one line, however long, so that logs can be grepped; a server's multi-line message too."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import orjson
import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal
from rich.console import Console

from scanner import ScanSummary, cli
from scanner.cli.report import UNBOUNDED_WIDTH, logging_to_stderr, stderr_console
from scanner.engine.stats import Failure, RegionSummary
from scanner.output.progress import one_line, render_summary
from tests.cli.conftest import Run, ThreadedSimulator
from tests.loopback import serve_app

#: A server's message: longer than any terminal, over several lines, with a tab and rich markup.
MESSAGE = (
    "You are not authorized to do this action. [/bold] You should be authorized by RAM.\n"
    + "\tAuthAction: eas:ListServices\r\n"
    + " ".join(f"detail-{n:03d}" for n in range(40))
    + "\nlast line"
)
FLAT = one_line(MESSAGE)


def test_one_line_collapses_breaks_and_control_characters() -> None:
    assert one_line("a\nb\r\n\tc  d\x1b[31m e\x00\x9bf\u2028g ") == "a b c  d [31m e f g "
    # Text without line breaks or control characters is left as it is (a tab, double spaces, ends),
    # so that a message on stderr can be found as written in the summary file.
    for text in ("Service  not\tfound ", " x", "ünïcode — fine"):
        assert one_line(text) == text
    assert "\n" not in FLAT
    assert FLAT.startswith("You are not authorized to do this action. [/bold] You should")
    assert FLAT.endswith("detail-039 last line")


@pytest.fixture(scope="module")
def refusing(portal: BlockingPortal) -> Iterator[str]:
    """An endpoint that refuses every request with 403 and ``MESSAGE``."""

    async def refuse(request: web.Request) -> web.Response:
        body = {"Code": "Forbidden.RAM", "Message": MESSAGE, "RequestId": "4C6B3D4A-0000"}
        return web.Response(status=403, body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    with portal.wrap_async_context_manager(serve_app(app)) as url:
        yield url


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch, shared_sim: ThreadedSimulator) -> None:
    for name, value in shared_sim.env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("creds")
def test_a_long_multiline_failure_is_one_line_off_a_terminal(
    run_cli: Callable[..., Run], shared_sim: ThreadedSimulator, refusing: str
) -> None:
    healthy = shared_sim.regions[0]
    argv = ["scan", *shared_sim.endpoint_args([healthy]), "--endpoint", f"cn-beijing={refusing}"]
    result = run_cli(*argv, "--no-progress")  # stderr is captured: not a terminal
    assert result.code == cli.EXIT_INCOMPLETE, result.stderr
    lines = result.stderr.splitlines()
    [row] = [line for line in lines if line.startswith("cn-beijing")]
    assert "incomplete: " in row
    assert FLAT in row
    [failure] = [line for line in lines if line.startswith("  failed cn-beijing")]
    assert failure.startswith("  failed cn-beijing: Forbidden.RAM: ")
    assert FLAT in failure
    [verdict] = [line for line in lines if line.startswith("INCOMPLETE: ")]
    assert f"{len(result.records())} instances" in verdict
    [other] = [line for line in lines if line.startswith(healthy)]
    assert other.rstrip().endswith("complete")


@pytest.mark.usefixtures("creds")
def test_a_long_multiline_fatal_error_is_one_line(run_cli: Callable[..., Run], refusing: str) -> None:
    result = run_cli("scan", "--endpoint", f"cn-beijing={refusing}", "--quiet")
    assert result.code == cli.EXIT_FATAL
    [line] = result.stderr.splitlines()
    assert line.startswith("eas-scan: error: ")
    assert FLAT in line


def test_render_summary_on_a_wide_console_gives_one_line_per_row_and_failure() -> None:
    """The console ``eas-scan`` makes for a stderr that is not a terminal (``stderr_console``)."""
    summary = ScanSummary(
        complete=False,
        records=7,
        duration_s=1.5,
        requests=9,
        retries=0,
        throttled=0,
        regions={
            "cn-hangzhou": RegionSummary(services=2, instances=7, complete=True, error=None),
            "cn-beijing": RegionSummary(services=3, instances=0, complete=False, error=f"Boom: {MESSAGE}"),
        },
        failures=tuple(Failure("cn-beijing", f"svc-{n}", "InternalError", MESSAGE) for n in range(3)),
    )
    buffer = io.StringIO()
    render_summary(summary, Console(file=buffer, width=UNBOUNDED_WIDTH, soft_wrap=True))
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert len(lines) == 2 + 2 + 1 + 3  # header, rule, two regions, the verdict, three failures
    assert lines[3].startswith("cn-hangzhou")
    assert lines[3].endswith("complete")
    assert lines[2].startswith("cn-beijing")
    assert lines[2].endswith(f"incomplete: Boom: {FLAT}")
    assert lines[4] == "INCOMPLETE: 7 instances in 1.5s (9 requests, 0 retries, 0 throttled)"
    assert lines[5:] == [f"  failed cn-beijing/svc-{n}: InternalError: {FLAT}" for n in range(3)]


def test_the_stderr_console_is_unbounded_only_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert stderr_console().width == UNBOUNDED_WIDTH

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.setenv("COLUMNS", "100")
    assert stderr_console().width == 100


def test_log_lines_are_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    with logging_to_stderr(quiet=False, verbose=0):
        logging.getLogger("scanner.client").warning("refreshing credentials failed: %s", MESSAGE)
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(f" WARNING refreshing credentials failed: {FLAT}")
