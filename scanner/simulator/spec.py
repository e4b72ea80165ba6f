"""What fleet to simulate: regions, services per region, and how instances spread over services.

A ``FleetSpec`` is a small frozen value; ``scanner.simulator.fleet.Fleet`` turns it, with a seed,
into the same fleet every time. Three presets cover the usual sizes; a custom spec covers tests
("a service with exactly 250 instances") and benchmarks ("200,000 instances in 2 regions").
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from scanner.eas.endpoints import validate_region
from scanner.errors import ConfigError

__all__ = [
    "PRESETS",
    "REGION_CATALOG",
    "Even",
    "FleetSpec",
    "InstanceDistribution",
    "LongTail",
    "allocate_counts",
    "preset",
]

#: Real region ids with the names DescribeRegions gives them, in the order presets use them.
REGION_CATALOG: Final[tuple[tuple[str, str], ...]] = (
    ("cn-hangzhou", "华东1（杭州）"),
    ("cn-shanghai", "华东2（上海）"),
    ("cn-beijing", "华北2（北京）"),
    ("cn-shenzhen", "华南1（深圳）"),
    ("cn-zhangjiakou", "华北3（张家口）"),
    ("ap-southeast-1", "新加坡"),
    ("cn-hongkong", "中国香港"),
    ("us-west-1", "美国（硅谷）"),
    ("eu-central-1", "德国（法兰克福）"),
    ("ap-southeast-5", "印度尼西亚（雅加达）"),
    ("us-east-1", "美国（弗吉尼亚）"),
    ("ap-south-1", "印度（孟买）"),
    ("cn-chengdu", "西南1（成都）"),
    ("cn-wulanchabu", "华北6（乌兰察布）"),
    ("ap-northeast-1", "日本（东京）"),
    ("ap-southeast-3", "马来西亚（吉隆坡）"),
)
_REGION_NAMES: Final[Mapping[str, str]] = dict(REGION_CATALOG)


@dataclass(frozen=True, slots=True)
class Even:
    """Every non-stopped service gets the same share of the instances (remainder to the first ones)."""


@dataclass(frozen=True, slots=True)
class LongTail:
    """Log-normal weights: most services get a few instances, a handful get thousands.

    ``sigma`` is the spread of the log-normal (2.4 gives a median near a twentieth of the mean);
    ``max_per_service`` caps the biggest service, the excess going to the others.
    """

    sigma: float = 2.4
    max_per_service: int = 20_000

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ConfigError(f"LongTail sigma must be >= 0, got {self.sigma!r}")
        if self.max_per_service < 1:
            raise ConfigError(f"LongTail max_per_service must be >= 1, got {self.max_per_service!r}")


InstanceDistribution = Even | LongTail


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """The shape of a simulated fleet.

    - ``regions``: how many regions (taken from ``REGION_CATALOG`` in order), or their ids.
    - ``services_per_region``: one number for every region, or one per region.
    - ``total_instances`` spread over all services by ``distribution``; services whose generated
      status is ``Stopped`` get none.
    - ``instance_counts``: instead of the two above, the exact instance count of every service,
      one sequence per region (0 makes a ``Stopped`` service).
    - ``service_names``: optional explicit names, one sequence per region (same shape as the
      counts); generated names are used where a sequence is shorter.
    """

    regions: int | tuple[str, ...] = 2
    services_per_region: int | tuple[int, ...] = 25
    total_instances: int = 1_000
    distribution: InstanceDistribution = field(default_factory=LongTail)
    instance_counts: tuple[tuple[int, ...], ...] | None = None
    service_names: tuple[tuple[str, ...], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.regions, int):
            if self.regions < 1:
                raise ConfigError(f"regions must be >= 1, got {self.regions}")
        else:
            if not self.regions:
                raise ConfigError("regions must not be empty")
            for region in self.regions:
                validate_region(region)
            if len(set(self.regions)) != len(self.regions):
                raise ConfigError(f"regions must be distinct, got {self.regions!r}")
        n = self.region_count
        if self.instance_counts is not None:
            if len(self.instance_counts) != n:
                raise ConfigError(f"instance_counts needs one sequence per region ({n})")
            if any(c < 0 for row in self.instance_counts for c in row):
                raise ConfigError("instance_counts must not be negative")
        else:
            per_region = self.services_per_region
            counts = (per_region,) * n if isinstance(per_region, int) else per_region
            if len(counts) != n or any(c < 0 for c in counts):
                raise ConfigError(
                    "services_per_region must be >= 0, one number or one per region "
                    f"({n}); got {per_region!r}"
                )
            if self.total_instances < 0:
                raise ConfigError(f"total_instances must be >= 0, got {self.total_instances}")
        if self.service_names is not None:
            if len(self.service_names) != n:
                raise ConfigError(f"service_names needs one sequence per region ({n})")
            for region_index, names in enumerate(self.service_names):
                if len(names) > self.services_in(region_index):
                    raise ConfigError(f"service_names of region {region_index} has more names than services")
                if len(set(names)) != len(names) or not all(names):
                    raise ConfigError(
                        f"service_names of region {region_index} must be distinct and non-empty"
                    )

    @property
    def region_count(self) -> int:
        return self.regions if isinstance(self.regions, int) else len(self.regions)

    def region_ids(self) -> tuple[str, ...]:
        """The region ids, catalogue regions first, then ``xx-sim-N`` for any beyond it."""
        if not isinstance(self.regions, int):
            return self.regions
        ids = [region for region, _ in REGION_CATALOG[: self.regions]]
        ids += [f"xx-sim-{i}" for i in range(len(ids), self.regions)]
        return tuple(ids)

    def services_in(self, region_index: int) -> int:
        if self.instance_counts is not None:
            return len(self.instance_counts[region_index])
        per_region = self.services_per_region
        return per_region if isinstance(per_region, int) else per_region[region_index]

    @staticmethod
    def region_name(region: str) -> str:
        return _REGION_NAMES.get(region, region)


def allocate_counts(
    total: int, eligible: Sequence[bool], distribution: InstanceDistribution, rng: random.Random
) -> list[int]:
    """Split ``total`` instances over services, exactly; ineligible (stopped) services get 0.

    Largest-remainder rounding of the weights, at least one instance per eligible service while
    there are enough, and the ``LongTail`` cap enforced by handing the excess to the others.
    """
    slots = [i for i, ok in enumerate(eligible) if ok]
    counts = [0] * len(eligible)
    if not slots or total <= 0:
        return counts
    if isinstance(distribution, LongTail):
        weights = [rng.lognormvariate(0.0, distribution.sigma) for _ in slots]
        cap = distribution.max_per_service
    else:
        weights = [1.0] * len(slots)
        cap = total
    floor_each = 1 if total >= len(slots) else 0
    spread = total - floor_each * len(slots)
    weight_sum = math.fsum(weights)
    shares = [spread * w / weight_sum for w in weights]
    base = [floor_each + int(s) for s in shares]
    leftover = total - sum(base)
    # Largest remainders first; ties by position so the result is deterministic.
    by_remainder = sorted(range(len(slots)), key=lambda k: (-(shares[k] - int(shares[k])), k))
    for k in by_remainder[:leftover]:
        base[k] += 1
    if cap < total and len(slots) * cap >= total:
        excess = sum(max(0, c - cap) for c in base)
        base = [min(c, cap) for c in base]
        # Give the excess to the heaviest services that still have room, round-robin.
        order = sorted(range(len(slots)), key=lambda k: (-weights[k], k))
        while excess:
            for k in order:
                if excess and base[k] < cap:
                    base[k] += 1
                    excess -= 1
    for k, slot in enumerate(slots):
        counts[slot] = base[k]
    return counts


#: The named fleets. ``large`` has a long tail: median ~5 instances a service, a few with 20,000.
PRESETS: Final[Mapping[str, FleetSpec]] = {
    "small": FleetSpec(
        regions=2, services_per_region=25, total_instances=1_000, distribution=LongTail(1.6, 200)
    ),
    "medium": FleetSpec(
        regions=6, services_per_region=167, total_instances=50_000, distribution=LongTail(2.0, 5_000)
    ),
    "large": FleetSpec(
        regions=10, services_per_region=1_000, total_instances=1_000_000, distribution=LongTail(2.4, 20_000)
    ),
}


def preset(name: str) -> FleetSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
