"""Between a scan and a scan directory: each page to its (account, region)'s part, and the commits.

``PartRouter`` keeps one open part per unit that has records in flight, opened on its first page.
The scan commits a unit when its listing ends (``commit``, the unit of resume), or all of them at the
end from the summary (``commit_all`` with ``outcomes_from_summary``). Leaving the router without a
commit (an error, Ctrl-C) discards the parts still open: their units keep whatever entry they had.
A commit under way when the caller is cancelled (by anyio or by asyncio itself) ends first, whole.

::

    async with PartRouter(directory, plan=plan) as router:
        async for page in stream.batches():
            await router.write(page)
        await router.commit_all(outcomes_from_summary(stream.summary.to_dict(), units=expected))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from scanner.errors import UsageError
from scanner.scandir.directory import PartEntry, PartStatus, PartWriter, ResumePlan, ScanDirectory
from scanner.scandir.layout import Unit

__all__ = ["Outcome", "PartRouter", "outcomes_from_summary"]

#: How a unit's listing ended: its status and, when incomplete, the failures (summary entries).
Outcome = tuple[PartStatus, list[dict[str, Any]]]


def outcomes_from_summary(
    summary: Mapping[str, Any], *, account: str | None = None, units: Iterable[Unit] = ()
) -> dict[Unit, Outcome]:
    """Each region's outcome from a scan summary (``ScanSummary.to_dict()``, the ``--summary`` JSON).

    A region is complete when the summary says so and no failure names it. ``units`` adds units the
    summary does not mention (an expected region that never started): incomplete.
    """
    failures: dict[str, list[dict[str, Any]]] = {}
    for failure in summary.get("failures", ()):
        failures.setdefault(failure.get("region"), []).append(dict(failure))
    outcomes: dict[Unit, Outcome] = {}
    for region, info in summary.get("regions", {}).items():
        found = failures.get(region, [])
        if info.get("complete") and not found:
            outcomes[Unit(account, region)] = ("complete", [])
            continue
        if not found:
            message = info.get("error") or "the region's listing did not finish"
            found = [{"region": region, "service": None, "code": "Incomplete", "message": message}]
        outcomes[Unit(account, region)] = ("incomplete", found)
    for unit in units:
        if unit not in outcomes:
            failure = {"region": unit.region, "service": None, "code": "NotScanned", "message": "not scanned"}
            outcomes[unit] = ("incomplete", [failure])
    return outcomes


class PartRouter:
    """Writes each page to its unit's part (see the module docstring)."""

    def __init__(
        self, directory: ScanDirectory, *, account: str | None = None, plan: ResumePlan | None = None
    ) -> None:
        self._directory = directory
        self._account = account
        self._plan = plan
        self._parts: dict[Unit, PartWriter] = {}
        self._closed = False
        #: Records dropped because their unit is already complete in the directory (a resume).
        self.skipped = 0
        self.entries: list[PartEntry] = []

    async def __aenter__(self) -> PartRouter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(exc_type, exc, tb)

    async def aclose(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        """Discard every part not committed yet."""
        self._closed = True
        parts, self._parts = self._parts, {}
        for part in parts.values():
            await part.__aexit__(exc_type, exc, tb)

    def _unit(self, record: Mapping[str, Any]) -> Unit:
        account = record.get("AccountId", self._account) if self._directory.params.multi_account else None
        return self._directory.unit(account, record["ClusterId"])

    async def write(self, records: Sequence[dict[str, Any]]) -> None:
        """Append a page (usually of one unit; mixed pages are split)."""
        if self._closed:
            raise UsageError("the PartRouter is closed")
        if not records:
            return
        first = self._unit(records[0])
        if all(self._unit(record) == first for record in records):
            await self._write(first, list(records))
            return
        groups: dict[Unit, list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault(self._unit(record), []).append(record)
        for unit, group in groups.items():
            await self._write(unit, group)

    async def _write(self, unit: Unit, records: list[dict[str, Any]]) -> None:
        if self._plan is not None and not self._plan.should_scan(unit.account, unit.region):
            self.skipped += len(records)
            return
        part = await self._open(unit)
        await part.write(records)

    async def _open(self, unit: Unit) -> PartWriter:
        part = self._parts.get(unit)
        if part is None:
            part = self._directory.part(unit.account, unit.region)
            await part.__aenter__()
            self._parts[unit] = part
        return part

    async def commit(
        self,
        account: str | None,
        region: str,
        status: PartStatus = "complete",
        failures: Sequence[Mapping[str, Any]] = (),
    ) -> PartEntry | None:
        """Commit a unit whose listing ended (a unit with no records gets an entry and no file).

        A unit the resume plan calls complete is left as it is (None).
        """
        unit = self._directory.unit(account, region)
        if self._plan is not None and not self._plan.should_scan(unit.account, unit.region):
            return None
        part = await self._open(unit)
        try:
            await part.commit(status, failures)
        finally:
            # The commit has ended, or never started, even if the caller was cancelled meanwhile: a
            # committed part is kept (and listed in ``entries``), any other discarded.
            del self._parts[unit]
            await part.__aexit__(None, None, None)
            if part.entry is not None:
                self.entries.append(part.entry)
        return part.entry

    async def commit_all(self, outcomes: Mapping[Unit, Outcome]) -> list[PartEntry]:
        """Commit every unit of ``outcomes``, and any part still open (incomplete: no outcome known)."""
        committed: list[PartEntry] = []
        for unit, (status, failures) in sorted(
            outcomes.items(), key=lambda item: (item[0].account or "", item[0].region)
        ):
            entry = await self.commit(unit.account, unit.region, status, failures)
            if entry is not None:
                committed.append(entry)
        for unit in sorted(self._parts, key=_sort_key):
            failure = {"region": unit.region, "service": None, "code": "Incomplete", "message": "no outcome"}
            entry = await self.commit(unit.account, unit.region, "incomplete", [failure])
            if entry is not None:
                committed.append(entry)
        return committed


def _sort_key(unit: Unit) -> tuple[str, str]:
    return (unit.account or "", unit.region)
