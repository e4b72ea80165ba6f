"""latency: every request takes 200 ms more (simulator ``--latency-ms 200``), no rate limit.

What this measures is latency hiding: how close the scanner comes to the fewest round trips its
default concurrency and its own dependent chain allow. The latency is chosen so that latency
dominates: the ``floor_aiohttp`` client's CPU for the whole fleet is at most a quarter of the
bound (``floor_cpu_s``, measured in the same run on the same simulator; ``floor_cpu_share`` is
the ratio). The fleet (40,000 instances, 4 regions x 100 services, up to 2,000 per service) has
``ideal_rounds`` = 12, and the floor spends 0.47-0.49 s of CPU on it (~12 µs per record, 2 shared
cores, 2026-12): that is a quarter of 12 rounds at 4 x 0.49 / 12 = 163 ms, and 200 ms leaves
about 20% for a slower host (``floor_cpu_share`` ~0.2 there).

``ideal_s`` is a lower bound no client can beat with the scanner's default concurrency, counting
the scanner's dependent chain in its depth::

    P(s)    = max(1, ceil(instances(s) / 100))         ListServiceInstances pages of service s
    R       = sum over services of P(s)                 instance pages any client must fetch
    C       = min(Concurrency.total, regions * Concurrency.per_region)   requests in flight
    K       = Concurrency.pages_per_listing             pages of one listing in flight
    chain(s) = 1                                        if P(s) = 1 (one answer is the listing)
             = 1 + ceil((P(s) - 1) / K) + 1             otherwise: its last page (the opening
                                                        look at its end), its other pages K at a
                                                        time, then the closing look
    ideal_rounds = 1 + max(ceil(R / C), max over s of chain(s))
    ideal_s      = ideal_rounds * latency

The leading 1 is ListServices: no service can be listed before it names it, so its round holds
nothing else (every region's services fit one ListServices page here; ``ideal`` checks it). The
rest is the larger of the width (every page, ``C`` at a time, perfectly packed) and the depth (the
longest listing's chain). ``ideal_depth`` is the chain alone (``1 + max chain(s)``). The fleet is
generated in this process from the simulator's own arguments
(``scanner.simulator.standalone.simulator_from_args``).

``ideal_s`` counts in its width only the pages any client must fetch (``ideal_requests`` = R). The
scanner must also send one request more per listing of more than one page: its closing look, the
one-record request that proves the listing did not change while it was read (a ``complete``
verdict means exactly that; see ``scanner/engine/listing.py`` and the README's verdict table).
That look cannot overlap its own listing's pages (it must follow all of them), only other
listings', so it takes a slot of the width like any page. ``proven_ideal_s`` is the same bound
with those requests in the width, the fewest round trips a client that proves what the scanner
proves could take::

    L                   = number of services with P(s) > 1     closing looks (``closing_looks``)
    proven_ideal_rounds = 1 + max(ceil((R + L) / C), max over s of chain(s))
    proven_ideal_s      = proven_ideal_rounds * latency

Neither bound counts the scanner's slow start (the first round of each (region, action) scope is
``RateLimit.slow_start_window`` requests, 8 per region here, not 16): it is the price of not
knowing a rate limit, not of the fleet. The goal stays ``scanner.wall_s <= 1.25 * ideal_s``;
``vs_ideal`` and ``vs_proven_ideal`` are the scanner's wall over each bound.

Clients: ``scanner`` and ``sdk_async`` as in throughput, and ``floor_aiohttp`` (pre-signed page
URLs, no dependent chain at all: its wall shows what the width alone costs at this latency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import SimulatorProcess, fleet_args, output_path, run_client
from scanner.engine.config import Concurrency
from scanner.simulator.standalone import build_parser, simulator_from_args

__all__ = ["LATENCY_MS", "Ideal", "ideal", "run"]

LATENCY_MS = 200.0
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class Ideal:
    """The bound of the module docstring and its parts."""

    seconds: float
    rounds: int
    depth: int
    requests: int
    #: Closing looks: one per listing of more than one page (``L`` of the module docstring).
    looks: int
    #: The bound with the closing looks in the width (``proven_ideal_*``).
    proven_seconds: float
    proven_rounds: int


def _chain(pages: int, per_listing: int) -> int:
    if pages == 1:
        return 1
    return 1 + math.ceil((pages - 1) / per_listing) + 1


def ideal(sim_args: list[str], latency_ms: float, limits: Concurrency | None = None) -> Ideal:
    """The bound of the module docstring, for the fleet ``sim_args`` describe."""
    limits = limits or Concurrency()
    fleet = simulator_from_args(build_parser().parse_args(sim_args)).fleet
    services_by_region: dict[str, int] = {}
    requests = looks = longest = 0
    for service in fleet.live_services():
        services_by_region[service.region] = services_by_region.get(service.region, 0) + 1
        pages = max(1, math.ceil(service.live_count / PAGE_SIZE))
        requests += pages
        looks += pages > 1
        longest = max(longest, _chain(pages, limits.pages_per_listing))
    if max(services_by_region.values(), default=0) > PAGE_SIZE:
        raise ValueError("the bound assumes every region's services fit one ListServices page")
    in_flight = min(limits.total, len(services_by_region) * limits.per_region)
    rounds = 1 + max(math.ceil(requests / in_flight), longest)
    proven_rounds = 1 + max(math.ceil((requests + looks) / in_flight), longest)
    return Ideal(
        seconds=round(rounds * latency_ms / 1000, 3),
        rounds=rounds,
        depth=1 + longest,
        requests=requests,
        looks=looks,
        proven_seconds=round(proven_rounds * latency_ms / 1000, 3),
        proven_rounds=proven_rounds,
    )


def run(*, quick: bool, workdir: Path) -> dict[str, Any]:
    args = fleet_args(
        regions=4 if not quick else 2,
        services=100 if not quick else 20,
        instances=40_000 if not quick else 2_000,
        max_per_service=2_000 if not quick else 300,
    )
    sim_args = [*args, "--latency-ms", str(LATENCY_MS), "--prewarm"]
    bound = ideal(sim_args, LATENCY_MS)
    result: dict[str, Any] = {
        "latency_ms": LATENCY_MS,
        "ideal_s": bound.seconds,
        "ideal_rounds": bound.rounds,
        "ideal_depth": bound.depth,
        "ideal_requests": bound.requests,
        "closing_looks": bound.looks,
        "proven_ideal_s": bound.proven_seconds,
        "proven_ideal_rounds": bound.proven_rounds,
    }
    with SimulatorProcess(sim_args) as sim:
        result["instances"] = sim.instances
        truth = sim.truth()
        for name in ("scanner", "sdk_async", "floor_aiohttp"):
            job = sim.client_job(output=output_path(workdir, f"latency-{name}"), orjson_floor=False)
            result[name] = run_client(name, sim, job, truth=None if name == "floor_aiohttp" else truth)
    wall = result["scanner"]["wall_s"]
    result["vs_ideal"] = round(wall / bound.seconds, 3)
    result["vs_proven_ideal"] = round(wall / bound.proven_seconds, 3)
    result["floor_cpu_s"] = result["floor_aiohttp"]["cpu_s"]
    result["floor_cpu_share"] = round(result["floor_cpu_s"] / bound.seconds, 3)
    return result
