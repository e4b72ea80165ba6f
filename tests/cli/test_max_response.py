"""``--max-response-mib N``: an answer larger than N MiB (after decompression) fails that request at
once, with code ``ResponseTooLarge``, and the rest of the scan goes on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal

from scanner import cli
from tests.cli.conftest import Run, ThreadedSimulator
from tests.loopback import serve_app


@pytest.fixture(scope="module")
def oversized(portal: BlockingPortal) -> Iterator[tuple[str, list[int]]]:
    """An endpoint whose every answer is a valid ListServices page of about 2 MiB; counts requests."""
    hits = [0]
    padding = "x" * (2 * 2**20)
    body = orjson.dumps(
        {
            "RequestId": "R",
            "TotalCount": 0,
            "PageNumber": 1,
            "PageSize": 100,
            "Services": [],
            "Padding": padding,
        }
    )

    async def answer(request: web.Request) -> web.Response:
        hits[0] += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    with portal.wrap_async_context_manager(serve_app(app)) as url:
        yield url, hits


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch, shared_sim: ThreadedSimulator) -> None:
    for name, value in shared_sim.env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("creds")
def test_an_answer_over_the_cap_fails_its_region_once_and_the_scan_goes_on(
    run_cli: Callable[..., Run], shared_sim: ThreadedSimulator, oversized: tuple[str, list[int]]
) -> None:
    url, hits = oversized
    healthy = shared_sim.regions[0]
    before = hits[0]
    argv = ["scan", *shared_sim.endpoint_args([healthy]), "--endpoint", f"cn-beijing={url}"]
    result = run_cli(*argv, "--no-progress", "--max-response-mib", "1")
    assert result.code == cli.EXIT_INCOMPLETE, result.stderr
    assert hits[0] - before == 1  # never retried
    [failure] = [line for line in result.stderr.splitlines() if line.startswith("  failed cn-beijing")]
    assert "ResponseTooLarge" in failure
    assert "1 MiB" in failure or "1048576" in failure or "1,048,576" in failure
    assert {record["ClusterId"] for record in result.records()} == {healthy}


@pytest.mark.usefixtures("creds")
def test_a_cap_above_the_answer_reads_it(
    run_cli: Callable[..., Run], oversized: tuple[str, list[int]]
) -> None:
    url, _ = oversized
    result = run_cli("scan", "--endpoint", f"cn-beijing={url}", "--no-progress", "--max-response-mib", "3")
    assert result.code == cli.EXIT_COMPLETE, result.stderr
    assert result.records() == []


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_a_cap_that_is_not_a_positive_integer_is_a_usage_error(
    run_cli: Callable[..., Run], value: str
) -> None:
    result = run_cli("scan", "--simulate", "--max-response-mib", value)
    assert result.code == cli.EXIT_USAGE
    assert "--max-response-mib" in result.stderr
