"""``python -m benchmarks.clients NAME``: run one client on the job read from stdin (see the package)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import orjson

CLIENTS = {
    "scanner": "benchmarks.clients.scanner_client",
    "scanner_org": "benchmarks.clients.scanner_org",
    "sdk_async": "benchmarks.clients.sdk_async",
    "sdk_sync": "benchmarks.clients.sdk_sync",
    "floor_aiohttp": "benchmarks.clients.floor_aiohttp",
    "cli": "benchmarks.clients.cli_client",
}


def main() -> None:
    name = sys.argv[1]
    job: dict[str, Any] = orjson.loads(sys.stdin.buffer.read())
    module = importlib.import_module(CLIENTS[name])
    result = module.run(job)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
