"""Issue 11 over real loopback HTTP: what a 404 means, and TotalCounts no listing can have.

A tiny aiohttp server answers as EAS would, and as gateways and broken servers do: the
verdicts and failure codes reach the summary through the real client and engine.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest
from aiohttp import web

from scanner import RetryPolicy, Scanner, StaticCredentials
from tests.loopback import serve_app

pytestmark = pytest.mark.asyncio

REGION = "cn-shanghai"


def instances(service: str, count: int) -> list[dict[str, Any]]:
    return [{"InstanceName": f"{service}-{i}", "Status": "Running"} for i in range(count)]


def json_response(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


#: service -> how its ListServiceInstances is answered
ANSWERS: dict[str, Any] = {
    "fine": lambda: json_response({"RequestId": "r", "TotalCount": 2, "Instances": instances("fine", 2)}),
    "gone": lambda: json_response(
        {"RequestId": "r", "Code": "InvalidService.NotFound", "Message": "no such service"}, 404
    ),
    "gateway": lambda: web.Response(
        status=404, text="<html><body><h1>404 Not Found</h1>nginx</body></html>", content_type="text/html"
    ),
    "wrong-api": lambda: json_response(
        {"RequestId": "r", "Code": "InvalidAction.NotFound", "Message": "The specified API does not exist."},
        404,
    ),
    "absurd": lambda: json_response(
        {"RequestId": "r", "TotalCount": 10**12, "Instances": instances("absurd", 3)}
    ),
    "negative": lambda: json_response({"RequestId": "r", "TotalCount": -1, "Instances": []}),
    "unbacked": lambda: json_response(
        {"RequestId": "r", "TotalCount": 999_999, "Instances": instances("unbacked", 4)}
    ),
}


def app(requests: Counter[str]) -> web.Application:
    async def services(request: web.Request) -> web.Response:
        items = [{"ServiceName": name, "TotalInstance": 2} for name in ANSWERS]
        return json_response({"RequestId": "r", "TotalCount": len(items), "Services": items})

    async def service_instances(request: web.Request) -> web.Response:
        name = request.match_info["service"]
        requests[name] += 1
        response: web.Response = ANSWERS[name]()
        return response

    application = web.Application()
    application.router.add_get("/api/v2/services", services)
    application.router.add_get("/api/v2/services/{region}/{service}/instances", service_instances)
    return application


async def test_verdicts_and_failure_codes_through_the_wire() -> None:
    requests: Counter[str] = Counter()
    async with (
        serve_app(app(requests)) as url,
        Scanner(
            credentials=StaticCredentials("LTAI5tExampleKeyId00", "secret"),
            endpoints={REGION: url},
            retry=RetryPolicy(max_attempts=2, base_delay=0.001),
            rng=random.Random(0),
        ) as scanner,
    ):
        stream = scanner.scan(regions=[REGION])
        records = [record async for record in stream]
    summary = stream.summary
    verdicts = {service: verdict for _, service, verdict in summary.notable_services}
    assert verdicts == {
        "gone": "deleted",
        "gateway": "failed",
        "wrong-api": "failed",
        "absurd": "failed",
        "negative": "failed",
        "unbacked": "failed",
    }
    assert summary.verdicts["complete"] == 1
    assert sorted((f.service or "", f.code) for f in summary.failures) == [
        ("absurd", "ImplausibleTotalCount"),
        ("gateway", "HTTP404"),
        ("negative", "ImplausibleTotalCount"),
        ("unbacked", "ImplausibleTotalCount"),
        ("wrong-api", "InvalidAction.NotFound"),
    ]
    assert not summary.complete
    by_service = Counter(record["ServiceName"] for record in records)
    assert by_service == {"fine": 2, "absurd": 3, "unbacked": 4}
    # Bounded work: 404s are never retried; an absurd count costs its one page.
    assert requests["gone"] == requests["gateway"] == requests["wrong-api"] == 1
    assert requests["absurd"] == 1
    assert requests["unbacked"] <= 12
