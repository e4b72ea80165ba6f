"""One local Ray cluster for the whole test session (2 CPUs, loopback, no dashboard), and the
embedded simulator served from a thread, so that Ray's worker processes can reach it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from scanner import StaticCredentials
from scanner.distributed import AssumedRoleSource, WorkerScanConfig, keep_ray_on_loopback
from scanner.simulator import (
    Digest,
    FaultConfig,
    FleetSpec,
    LongTail,
    OrgSpec,
    Simulator,
    account_key_digests,
    record_key_digest,
)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    keep_ray_on_loopback()  # before ray is imported: Ray's servers listen on 127.0.0.1 only
    import ray  # the [test] extra installs it: these tests run, never skipped

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


class ThreadedSim:
    def __init__(self, portal: BlockingPortal, sim: Simulator) -> None:
        self.portal = portal
        self.sim = sim
        self.regions = list(sim.regions)

    def digest(self) -> Digest:
        return self.portal.call(lambda: self.sim.fleet_digest())

    def set_faults(self, **changes: Any) -> None:
        self.portal.call(lambda: self.sim.set_faults(FaultConfig(**changes)))

    def config(self) -> WorkerScanConfig:
        return WorkerScanConfig(
            credentials=functools.partial(
                StaticCredentials, self.sim.access_key_id, self.sim.access_key_secret
            ),
            endpoints=dict(self.sim.endpoints),
            allow_insecure_http=True,
        )


@pytest.fixture(scope="module")
def sim() -> Iterator[ThreadedSim]:
    spec = FleetSpec(regions=4, services_per_region=12, total_instances=800, distribution=LongTail(1.2, 150))
    with start_blocking_portal() as portal:
        manager = portal.wrap_async_context_manager(Simulator(spec=spec, seed=11))
        simulator = manager.__enter__()
        try:
            yield ThreadedSim(portal, simulator)
        finally:
            manager.__exit__(None, None, None)


def directory_digest(root: Path) -> Digest:
    """The key digest of every record in the parts of a JSON Lines scan directory."""
    keys = []
    for part in sorted(root.glob("region=*/part-*.jsonl")):
        for line in part.read_bytes().splitlines():
            record = orjson.loads(line)
            keys.append((record["ClusterId"], record["ServiceName"], record["InstanceName"]))
    return record_key_digest(keys)


class ThreadedOrg:
    """An organisation simulator (a fleet per member) on a portal's loop."""

    def __init__(self, portal: BlockingPortal, sim: Simulator) -> None:
        self.portal = portal
        self.sim = sim
        assert sim.org is not None
        self.accounts = [member.account_id for member in sim.org.scannable()]
        self.regions = list(sim.regions)

    def digests(self) -> dict[str, Digest]:
        return self.portal.call(lambda: self.sim.org_digests())

    def org_info(self) -> dict[str, Any]:
        return self.portal.call(self.sim.org_info)

    def config(self) -> WorkerScanConfig:
        management = functools.partial(StaticCredentials, self.sim.access_key_id, self.sim.access_key_secret)
        return WorkerScanConfig(
            account_credentials=AssumedRoleSource(
                source=management, sts_endpoint=self.sim.sts_endpoint, allow_insecure_http=True
            ),
            endpoints=dict(self.sim.endpoints),
            allow_insecure_http=True,
        )


@pytest.fixture(scope="module")
def org_sim() -> Iterator[ThreadedOrg]:
    org = OrgSpec(
        members=5,
        fleet=FleetSpec(regions=2, services_per_region=5, distribution=LongTail(1.2, 100)),
        total_instances=600,
        non_success=1,
    )
    with start_blocking_portal() as portal:
        manager = portal.wrap_async_context_manager(Simulator(org=org, seed=3))
        simulator = manager.__enter__()
        try:
            yield ThreadedOrg(portal, simulator)
        finally:
            manager.__exit__(None, None, None)


def account_digests(root: Path) -> dict[str, Digest]:
    """Per account, the key digest of the records in a multi-account JSON Lines scan directory."""
    keys = []
    for part in sorted(root.glob("account=*/region=*/part-*.jsonl")):
        account = part.parent.parent.name.removeprefix("account=")
        for line in part.read_bytes().splitlines():
            record = orjson.loads(line)
            keys.append((account, record["ClusterId"], record["ServiceName"], record["InstanceName"]))
    return account_key_digests(keys)
