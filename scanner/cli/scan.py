"""Running the scan: open the Scanner (or the embedded simulator), write every record as it comes,
show progress, stop cleanly at the first signal; then say how it went, as a ``ScanResult``."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
from rich.console import Console

from scanner import (
    ConfigError,
    DefaultCredentials,
    Organization,
    Scanner,
    ScannerError,
    ScanStream,
    ScanSummary,
    StaticCredentials,
    batch_gc,
)
from scanner.cli.args import ORG_PRESETS
from scanner.cli.config import ScanConfig
from scanner.cli.signals import Interrupts
from scanner.cli.simulated import start_simulator
from scanner.errors import unwrap_group
from scanner.events import UnitEnded, UnitsPlanned
from scanner.output.files import OutputFile, records_error
from scanner.output.progress import LogProgress, TerminalProgress
from scanner.scandir import PartRouter, ResumePlan, ScanDirectory, Unit
from scanner.scandir.formats import part_encoder

__all__ = ["DirectoryTarget", "OutputClosed", "ScanResult", "run"]

log = logging.getLogger("scanner.cli")


class OutputClosed(ScannerError):
    """The output cannot take more records: its reader went away (EPIPE), or the disk is full."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """How the scan itself ended (the files are saved after it)."""

    #: None when the scan never started (bad configuration, no credentials, interrupted early).
    summary: ScanSummary | None = None
    #: One line for the user, when it failed.
    error: str | None = None
    #: The failure was a configuration the scan refused (exit 2).
    usage_error: bool = False
    #: The scan as a whole failed (exit 1).
    fatal: bool = False
    #: Stopped by a signal or Ctrl-C.
    interrupted: bool = False
    #: ``fatal`` because the output stopped taking records (a closed pipe, a full disk).
    output_closed: bool = False


@dataclass(frozen=True, slots=True)
class DirectoryTarget:
    """A scan directory to write (``--output-dir``), and what a resume keeps of it."""

    directory: ScanDirectory
    plan: ResumePlan | None = None

    def units(self, shard: Callable[[str | None, str], bool] | None) -> Callable[[str | None, str], bool]:
        """The units this run lists: its shard's, less the complete ones a resume keeps."""
        plan = self.plan

        def accept(account: str | None, region: str) -> bool:
            if shard is not None and not shard(account, region):
                return False
            return plan is None or plan.should_scan(account, region)

        return accept


def run(
    config: ScanConfig,
    records: OutputFile | DirectoryTarget,
    stderr: Console,
    interrupts: Interrupts,
    *,
    records_on_terminal: bool = False,
) -> ScanResult:
    """Scan on an event loop of its own, writing every record to ``records`` (an output, or the parts
    of a scan directory); errors become results. Anything but a ``ScannerError`` (or Ctrl-C) is a bug,
    and raised.
    """
    scan: Callable[[], Awaitable[ScanResult]]
    if config.fmt == "parquet":
        from scanner.output.parquet import use_system_memory_pool  # pyarrow only when it is used

        use_system_memory_pool()
    if config.engine.name == "ray" and isinstance(records, DirectoryTarget):
        from scanner.cli.ray_scan import scan_with_ray  # imports ray only when it runs

        scan = functools.partial(scan_with_ray, config, records, stderr, interrupts)
    else:
        scan = functools.partial(_scan, config, records, stderr, interrupts, records_on_terminal)
    try:
        try:
            with batch_gc():  # this process is the scan: less CPU in the garbage collector
                return anyio.run(scan)
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
    except ConfigError as exc:
        return ScanResult(error=str(exc), usage_error=True)
    except ScannerError as exc:  # no credentials, the simulator cannot start, ...
        return ScanResult(error=str(exc), fatal=True)
    except KeyboardInterrupt:
        return ScanResult(error="interrupted", interrupted=True)


async def _scan(
    config: ScanConfig,
    records: OutputFile | DirectoryTarget,
    stderr: Console,
    interrupts: Interrupts,
    records_on_terminal: bool,
) -> ScanResult:
    stream: ScanStream | None = None
    interrupted = False

    def stop() -> None:
        nonlocal interrupted
        interrupted = True
        if stream is not None:
            stream.close_nowait()  # the records already read are still written
        else:
            scope.cancel()  # credentials, the simulator: nothing written yet

    with anyio.CancelScope() as scope, interrupts.stopping(stop):
        async with AsyncExitStack() as stack:
            scanner = await _open_scanner(config, stack)
            stream = scanner.scan(
                regions=config.regions,
                services=config.services,
                service_filter=config.service_filter,
                units=records.units(config.shard) if isinstance(records, DirectoryTarget) else None,
                **config.instance_filters,
            )
            if isinstance(records, DirectoryTarget):
                summary, fatal = await _write_parts(config, stream, records.directory, stderr)
            else:
                summary, fatal = await _write_records(
                    config, stream, records, stderr, records_on_terminal=records_on_terminal
                )
            return ScanResult(
                summary=summary,
                error=str(fatal) if fatal is not None else None,
                fatal=fatal is not None,
                interrupted=interrupted,
                output_closed=isinstance(fatal, OutputClosed),
            )
    return ScanResult(interrupted=True)  # stopped before the scan began


async def _open_scanner(config: ScanConfig, stack: AsyncExitStack) -> Scanner:
    accounts: dict[str, Any] = {}
    if config.accounts is not None:
        accounts = {"accounts": config.accounts, **config.account_options}
    if config.simulate:
        simulator = await start_simulator(config.simulate, config.regions, stack)
        endpoints: dict[str, str] = dict(simulator.endpoints)
        credentials: Any = StaticCredentials(simulator.access_key_id, simulator.access_key_secret)
        if config.simulate in ORG_PRESETS:
            # The management account's RAM user: scanned as --org does.
            accounts = {
                "accounts": config.accounts or Organization(),
                **config.account_options,
                "sts_endpoint": simulator.sts_endpoint,
                "resourcemanager_endpoint": simulator.resourcemanager_endpoint,
            }
    else:
        endpoints = config.endpoints
        credentials = DefaultCredentials(config.profile)
        # Fail now, clearly, before any request. The repr masks the key and omits the secret.
        log.debug("using %r", await credentials.get_credentials())
    return await stack.enter_async_context(
        Scanner(
            credentials=credentials,
            endpoints=endpoints or None,
            **config.scanner_options(),
            **accounts,
        )
    )


async def _write_records(
    config: ScanConfig,
    stream: ScanStream,
    output: OutputFile,
    stderr: Console,
    *,
    records_on_terminal: bool,
) -> tuple[ScanSummary, ScannerError | None]:
    """Every record of ``stream`` to ``output``, with progress; the summary and any fatal error."""
    encoder = part_encoder(config.fmt, account_column=config.multi_account)
    threaded = config.fmt == "parquet"  # converting a page to Arrow takes a while: off the event loop
    write = output.write
    fatal: ScannerError | None = None
    written = 0
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        if config.progress and stderr.is_terminal:
            display = stack.enter_context(
                TerminalProgress(stream.statistics, stderr, accounts=config.multi_account)
            )
            if records_on_terminal:
                # Written straight to the screen, records would be overwritten by the next
                # redraw of the display; printed through it, they scroll above it.
                write = display.print_above
            tg.start_soon(display.run)
        elif config.progress:
            tg.start_soon(LogProgress(stream.statistics).run)
        try:
            write(encoder.header())
            async with contextlib.aclosing(stream.batches()) as batches:
                async for batch in batches:
                    if threaded:
                        write(await anyio.to_thread.run_sync(encoder.encode, batch))
                    else:
                        write(encoder.encode(batch))
                    written += len(batch)
            write(encoder.finish())  # Parquet's footer: the file is whole only with it
        except ScannerError as exc:  # fatal: raised once the records before it were delivered
            fatal = exc
        except OSError as exc:  # a full disk; `eas-scan scan | head`: nobody reads any more
            fatal = OutputClosed(records_error(config.output, exc, "the scan was stopped"))
            await stream.aclose()
        finally:
            tg.cancel_scope.cancel()
    # Interrupted, the pages still buffered were dropped: count what reached the output.
    return dataclasses.replace(stream.summary, records=written), fatal


async def _write_parts(
    config: ScanConfig, stream: ScanStream, directory: ScanDirectory, stderr: Console
) -> tuple[ScanSummary, ScannerError | None]:
    """Every record of ``stream`` into its region's part; each part committed when its region ends."""
    fatal: ScannerError | None = None
    written = 0
    expected: set[tuple[str | None, str]] = set()
    scanning: set[Unit] = set()
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        if config.progress and stderr.is_terminal:
            tg.start_soon(stack.enter_context(TerminalProgress(stream.statistics, stderr)).run)
        elif config.progress:
            tg.start_soon(LogProgress(stream.statistics).run)
        try:
            async with (
                PartRouter(directory) as router,
                contextlib.aclosing(stream.events()) as events,
            ):
                async for item in events:
                    if isinstance(item, UnitEnded):
                        await router.commit(item.account, item.region, *_unit_outcome(item))
                    elif isinstance(item, UnitsPlanned):
                        expected.update((item.account, region) for region in item.regions)
                        scanning.update(Unit(item.account, region) for region in item.scanning)
                        # Every unit of the scan (not only this shard's), for `eas-scan status`.
                        await anyio.to_thread.run_sync(directory.expect, sorted(expected, key=_unit_key))
                    else:
                        await router.write(item)
                        written += len(item)
        except ScannerError as exc:  # fatal: raised once the records before it were delivered
            fatal = exc
        except OSError as exc:  # a full disk, a folder gone: the parts committed so far stay whole
            fatal = OutputClosed(
                f"cannot write to the scan directory {directory.path} ({exc.strerror or exc}): the scan "
                "was stopped; the regions committed so far are kept: free some space and run again "
                "with --resume"
            )
            await stream.aclose()
        finally:
            tg.cancel_scope.cancel()
    with contextlib.suppress(OSError):
        directory.finish_run()
    summary = dataclasses.replace(stream.summary, records=written)
    if not summary.regions and scanning == set() and not summary.cancelled and fatal is None:
        # Nothing left to list (a resume of a complete scan, a shard with no region): complete.
        summary = dataclasses.replace(summary, complete=not summary.missing_services)
    log.info("scan directory %s: %d region(s) listed by this run", directory.path, len(scanning))
    return summary, fatal


def _unit_outcome(event: UnitEnded) -> tuple[Any, list[dict[str, Any]]]:
    if event.complete:
        return "complete", []
    failures = [failure.to_dict() for failure in event.failures]
    if not failures:
        failures = [
            {"region": event.region, "service": None, "code": "Incomplete", "message": "not listed whole"}
        ]
    return "incomplete", failures


def _unit_key(unit: tuple[str | None, str]) -> tuple[str, str]:
    return (unit[0] or "", unit[1])
