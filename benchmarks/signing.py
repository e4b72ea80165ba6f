"""How long it takes to prepare one signed ListServiceInstances request, against a plain baseline.

"Prepare" is everything the client does before handing the request to aiohttp: encode the path
and query, read the clock, draw a nonce, build the headers and sign them. The baseline is a
straightforward stdlib implementation of the same ACS3-HMAC-SHA256 recipe (what a first version,
or the SDK, does per request), timed in the same run so the two numbers are comparable.

Run: ``python -m benchmarks.signing`` (prints a table, writes ``benchmarks/results/signing.json``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scanner.client.api import EasClient, _check_paging
from scanner.client.credentials import Credentials, StaticCredentials
from scanner.eas.endpoints import EndpointResolver
from scanner.eas.params import InstanceQuery
from scanner.testing import FakeClock

__all__ = ["baseline_prepare", "measure_signing", "run"]

RESULTS = Path(__file__).parent / "results" / "signing.json"
REGION = "cn-shanghai"
SERVICE = "foo"
HOST = "pai-eas.cn-shanghai.aliyuncs.com"
USER_AGENT = "eas-fleet-scanner/0.1.0 Python/3.11 aiohttp/3.14"
ACCESS_KEY_ID, ACCESS_KEY_SECRET = "testid", "testsecret"
FILTERS = {"Filter": "10.0", "InstanceStatus": "Running"}


def baseline_prepare(
    params: dict[str, str],
    *,
    date: str | None = None,
    nonce: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The recipe written plainly, all of it per request (the ~46 µs version)."""
    path = f"/api/v2/services/{quote(REGION, safe='~')}/{quote(SERVICE, safe='~')}/instances"
    query = "&".join(f"{key}={quote(params[key], safe='~')}" for key in sorted(params))
    payload_hash = hashlib.sha256(b"").hexdigest()
    headers = {
        "host": HOST,
        "x-acs-version": "2021-07-01",
        "x-acs-action": "ListServiceInstances",
        "user-agent": USER_AGENT,
        "x-acs-date": date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "accept": "application/json",
        "x-acs-content-sha256": payload_hash,
    }
    names = sorted(name.lower() for name in headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    signed_headers = ";".join(names)
    canonical = "\n".join(["GET", path, query, canonical_headers, signed_headers, payload_hash])
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    signature = hmac.new(
        ACCESS_KEY_SECRET.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={ACCESS_KEY_ID},SignedHeaders={signed_headers},Signature={signature}"
    )
    return f"https://{HOST}{path}?{query}", headers


def _client(**kwargs: Any) -> EasClient:
    return EasClient(
        credentials=StaticCredentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
        endpoints=EndpointResolver(),
        user_agent=USER_AGENT,
        **kwargs,
    )


def _ours(client: EasClient, credentials: Credentials) -> Callable[[int], tuple[str, dict[str, str]]]:
    """The client's own per-request path (path cache, query cache, signer), minus the network."""
    endpoint = client._endpoints.resolve(REGION)
    query = InstanceQuery(filter=FILTERS["Filter"], instance_status=FILTERS["InstanceStatus"])

    def prepare(page_number: int) -> tuple[str, dict[str, str]]:
        _check_paging(page_number, 50)
        path = client._instances_path(REGION, SERVICE)
        query_string = client._query_string(query, page_number, 50)
        return client._prepare(endpoint, "ListServiceInstances", path, query_string, credentials)

    return prepare


def _check_identical() -> None:
    """Both implementations must produce the same request, or the comparison means nothing."""
    clock = FakeClock()
    client = _client(clock=clock, nonce_factory=lambda: "0123456789abcdef0123456789abcdef")
    url, headers = _ours(client, Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))(7)
    date = clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")
    expected_url, expected = baseline_prepare(
        {**FILTERS, "PageNumber": "7", "PageSize": "50"}, date=date, nonce="0123456789abcdef0123456789abcdef"
    )
    if (url, headers) != (expected_url, expected):
        raise AssertionError(f"implementations differ:\n{url}\n{headers}\n{expected_url}\n{expected}")


def _best_us(run: Callable[[int], object], n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            run(i % 20 + 1)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def measure_signing(n: int = 20000, repeats: int = 7) -> dict[str, Any]:
    """Microseconds to prepare one signed request: ours and the stdlib baseline (best of runs)."""
    _check_identical()
    credentials = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    ours = _ours(_client(), credentials)

    def baseline(page_number: int) -> object:
        return baseline_prepare({**FILTERS, "PageNumber": str(page_number), "PageSize": "50"})

    # Interleave warm-ups so neither side benefits from running second.
    ours(1)
    baseline(1)
    us_ours = _best_us(ours, n, repeats)
    us_baseline = _best_us(baseline, n, repeats)
    return {
        "us_per_request": round(us_ours, 2),
        "baseline_stdlib_us": round(us_baseline, 2),
        "speedup": round(us_baseline / us_ours, 2),
        "n": n,
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    """The ``signing`` scenario of ``python -m benchmarks run`` (no I/O, so measured in-process)."""
    return measure_signing(n=2_000, repeats=3) if quick else measure_signing()


def main() -> None:
    result = measure_signing()
    print(f"{'implementation':<28}{'µs / signed request':>20}")
    print(f"{'stdlib baseline':<28}{result['baseline_stdlib_us']:>20.2f}")
    print(f"{'EasClient (pre-computed)':<28}{result['us_per_request']:>20.2f}")
    print(f"{'speed-up':<28}{result['speedup']:>19.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
