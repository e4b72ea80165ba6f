"""The Ray engine over an organisation: units are (member account, region), roles assumed in the workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.distributed import WorkUnit, scan_with_ray
from scanner.scandir import ScanDirectory
from tests.distributed.conftest import ThreadedOrg, account_digests

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_two_workers_scan_every_member_exactly(org_sim: ThreadedOrg, tmp_path: Path) -> None:
    out = tmp_path / "org"
    units = [WorkUnit(account, region) for account in org_sim.accounts for region in org_sim.regions]
    summary = scan_with_ray(org_sim.config(), out, units=units, workers=2, assume_role_rate=10.0)
    assert summary.complete, summary.to_dict()
    expected = org_sim.digests()
    assert account_digests(out) == {a: d for a, d in expected.items() if d.count}
    assert summary.records == sum(d.count for d in expected.values())
    regions = summary.to_dict()["regions"]
    assert set(regions) == {f"{unit.account}/{unit.region}" for unit in units}
    directory = ScanDirectory.open(out)
    assert directory.params.accounts == tuple(sorted(org_sim.accounts))
    assert directory.verify() == []
    assert directory.status()["complete"]
    # Each worker assumes an account's role at most once, whatever the number of its units there.
    assume_calls = org_sim.org_info()["rpc_requests"]["Sts"]["AssumeRole"]
    assert len(org_sim.accounts) <= assume_calls <= 2 * len(org_sim.accounts)
