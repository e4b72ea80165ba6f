"""Progress of a running scan, and its summary table, for people (rich) and for logs.

On a terminal, a live display on stderr: regions, services and instances done of the totals the
API's TotalCount revealed so far, requests per second, retries, throttles, elapsed time and ETA.
Elsewhere (cron, CI, a pipe) one log line at a modest interval instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable

import anyio
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from scanner.engine.stats import ScanStatistics, ScanSummary

__all__ = ["LogProgress", "TerminalProgress", "describe", "one_line", "render_summary"]

log = logging.getLogger("scanner.progress")

StatisticsSource = Callable[[], ScanStatistics]


def _rate(stats: ScanStatistics) -> float:
    return stats.requests / stats.elapsed_s if stats.elapsed_s > 0 else 0.0


def describe(stats: ScanStatistics) -> str:
    """One line of progress, for logs."""
    regions_done = sum(
        1 for r in stats.regions.values() if r.services_known and r.services_done >= r.services_known
    )
    accounts = f"accounts {stats.accounts_done:,}/{stats.accounts_total:,}, " if stats.accounts_total else ""
    return accounts + (
        f"regions {regions_done}/{len(stats.regions)}, services {stats.services_done:,}/"
        f"{stats.services_known:,}, instances {stats.instances_done:,}/{stats.instances_known:,}, "
        f"{_rate(stats):,.0f} req/s, {stats.retries:,} retries, {stats.throttled:,} throttled, "
        f"{stats.failures:,} failures, {stats.elapsed_s:,.1f}s elapsed"
    )


class LogProgress:
    """Logs a progress line every ``interval`` seconds while the scan runs."""

    def __init__(
        self,
        source: StatisticsSource,
        *,
        interval: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._source = source
        self._interval = interval
        self._sleep = sleep

    async def run(self) -> None:
        while True:
            await self._sleep(self._interval)
            log.info("progress: %s", describe(self._source()))


class _Progress(Progress):
    """Bars for regions, services and instances, then one line of counters under them."""

    footer: Text = Text()

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self.footer


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class TerminalProgress:
    """A live rich display on a terminal, refreshed a few times a second.

    Kept within 80 columns: the bars and counts on three rows, the rates and times on a fourth.
    """

    def __init__(
        self, source: StatisticsSource, console: Console, *, interval: float = 0.2, accounts: bool = False
    ) -> None:
        """``accounts``: a multi-account scan (a line for the accounts, done / total, on top)."""
        self._source = source
        self._accounts = accounts
        self._interval = interval
        self._progress = _Progress(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            console=console,
            transient=False,
            auto_refresh=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        if self._source().accounts_total or self._accounts:
            self._tasks["accounts"] = self._progress.add_task("accounts", total=None)
        for name in ("regions", "services", "instances"):
            self._tasks[name] = self._progress.add_task(name, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.update()
        self._progress.stop()

    def print_above(self, data: bytes) -> None:
        """Write output text (whole lines) above the display, on its console."""
        if data:
            self._progress.console.print(Text(data.decode()), end="", soft_wrap=True, highlight=False)

    def update(self) -> None:
        stats = self._source()
        regions_done = sum(
            1 for r in stats.regions.values() if r.services_known and r.services_done >= r.services_known
        )
        progress = self._progress
        if "accounts" in self._tasks:
            progress.update(
                self._tasks["accounts"], completed=stats.accounts_done, total=stats.accounts_total or None
            )
        progress.update(self._tasks["regions"], completed=regions_done, total=len(stats.regions) or None)
        progress.update(
            self._tasks["services"], completed=stats.services_done, total=stats.services_known or None
        )
        instances = self._tasks["instances"]
        progress.update(instances, completed=stats.instances_done, total=stats.instances_known or None)
        # The instance total grows while services are still being listed: no ETA before it settles.
        listed = stats.services_known > 0 and all(r.services_known for r in stats.regions.values())
        eta = progress.tasks[instances].time_remaining if listed else None
        footer = Text(
            f"{_rate(stats):,.0f} req/s · {stats.retries:,} retries · {stats.throttled:,} throttled · "
            f"elapsed {_clock(stats.elapsed_s)} · ETA {_clock(eta)}"
        )
        if stats.failures:
            footer.append(f" · {stats.failures:,} failures", style="red")
        progress.footer = footer
        progress.refresh()

    async def run(self) -> None:
        while True:
            self.update()
            await anyio.sleep(self._interval)


#: A line break (with the blanks around it), or a run of other control characters (escape
#: sequences included; a tab is kept).
_BREAKS = re.compile(r"[ \t]*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029][\s]*|[\x00-\x08\x0e-\x1f\x7f-\x9f]+")


def one_line(text: str) -> str:
    """``text`` on one line: each line break (with the blanks around it) and each run of other
    control characters becomes one space. Text without them is returned as it is, so a message
    shown on stderr can be found as written in the summary file."""
    return _BREAKS.sub(" ", text)


def render_summary(summary: ScanSummary, console: Console) -> None:
    """The end-of-scan table on stderr: per region, services, instances, and complete or why not.

    Text that came from a server (errors, names) is shown as plain text on one line: never read as
    rich markup, never a line break. Each row and each failure is one line on a console wide enough.
    """
    table = Table(title=None, show_edge=False, pad_edge=False)
    table.add_column("region")
    table.add_column("services", justify="right")
    table.add_column("instances", justify="right")
    table.add_column("status")
    for name, region in sorted(summary.regions.items()):
        status = (
            Text("complete", style="green")
            if region.complete
            else Text.assemble(("incomplete", "red"), f": {one_line(str(region.error))}")
        )
        table.add_row(one_line(name), f"{region.services:,}", f"{region.instances:,}", status)
    console.print(table)
    verdict = Text("complete", style="green") if summary.complete else Text("INCOMPLETE", style="red bold")
    console.print(
        Text.assemble(
            verdict,
            f": {summary.records:,} instances in {summary.duration_s:,.1f}s ({summary.requests:,} "
            f"requests, {summary.retries:,} retries, {summary.throttled:,} throttled)",
        )
    )
    if summary.accounts is not None:
        incomplete = [(a, e) for a, e in summary.accounts.items() if not e.complete]
        complete = len(summary.accounts) - len(incomplete)
        console.print(
            f"  accounts: {complete:,} complete, {len(incomplete):,} incomplete"
            + (f", {len(summary.skipped_accounts):,} skipped (status)" if summary.skipped_accounts else ""),
            markup=False,
            highlight=False,
        )
        for account, entry in incomplete[:20]:
            name = f" ({entry.name})" if entry.name else ""
            line = one_line(f"{account}{name}: {entry.error}")
            console.print(Text.assemble("  ", ("incomplete", "red"), f" account {line}"))
    for failure in summary.failures[:20]:
        where = "/".join(part for part in (failure.account, failure.region, failure.service) if part)
        line = one_line(f"{where}: {failure.code}: {failure.message}")
        console.print(Text.assemble("  ", ("failed", "red"), f" {line}"))
    if len(summary.failures) > 20:
        console.print(f"  ... and {len(summary.failures) - 20} more failures (see --summary)", markup=False)
    if summary.missing_services:
        console.print(Text("  not found in any region: " + one_line(", ".join(summary.missing_services))))
    changed = summary.verdicts.get("reread", 0) + summary.verdicts.get("unstable", 0)
    if changed:
        console.print(f"  {changed} service(s) changed while listed and were re-read")
