"""The simulated organisation's members by what a scan should make of them (ground truth)."""

from __future__ import annotations

from scanner.simulator import Simulator
from scanner.simulator.org import SUCCESS_STATUSES


def members_by_flag(sim: Simulator) -> dict[str, list[str]]:
    """Account ids: ``ok`` (scanned), ``skipped`` (not in a success status), ``missing_role``
    (EntityNotExist.Role), ``denied`` (the role is refused by EAS)."""
    assert sim.org is not None
    out: dict[str, list[str]] = {"ok": [], "skipped": [], "missing_role": [], "denied": []}
    for m in sim.org.members:
        if m.status not in SUCCESS_STATUSES:
            out["skipped"].append(m.account_id)
        elif not m.role_exists:
            out["missing_role"].append(m.account_id)
        elif m.eas_denied:
            out["denied"].append(m.account_id)
        else:
            out["ok"].append(m.account_id)
    return out
