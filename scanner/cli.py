"""``eas-scan``: batch inventory of PAI-EAS instances, for people and for cron.

``eas-scan scan`` streams every instance as JSON Lines (or CSV) to stdout or a file, shows progress
on a terminal, prints a summary, and exits 0 (complete), 3 (finished, incomplete), 2 (bad usage or
configuration, before any request), 1 (fatal: no credentials, every region refused, the output
could not be written) or 130 (interrupted). ``eas-scan simulate`` runs the embedded EAS simulator.
Built on the public library API only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn, Protocol

import anyio
import orjson
from rich.console import Console

from scanner import (
    Concurrency,
    ConfigError,
    CredentialsError,
    DefaultCredentials,
    RateLimit,
    RetryPolicy,
    ScanFailedError,
    Scanner,
    ScannerError,
    ScanStream,
    ScanSummary,
    StaticCredentials,
    Timeouts,
    __version__,
)
from scanner.eas.endpoints import EndpointResolver, validate_region
from scanner.eas.params import MAX_PAGE_SIZE, InstanceSort, Order, ResourceType, Role
from scanner.gctuning import batch_gc
from scanner.output.progress import LogProgress, TerminalProgress, one_line, render_summary
from scanner.output.sinks import OutputFile, check_writable, encoder_for

__all__ = ["EXIT_COMPLETE", "EXIT_FATAL", "EXIT_INCOMPLETE", "EXIT_INTERRUPTED", "EXIT_USAGE", "main"]

EXIT_COMPLETE = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130

PRESETS = ("small", "medium", "large")

log = logging.getLogger("scanner.cli")

#: The width of stderr when it is not a terminal: in effect none, so rich never wraps a line.
UNBOUNDED_WIDTH: Final = 1 << 20


SCAN_EXAMPLES = """\
examples:
  eas-scan scan --simulate                        try it on the embedded simulator (no account)
  eas-scan scan --simulate medium -o fleet.jsonl  a bigger simulated fleet, to a file
  eas-scan scan -o fleet.jsonl --summary run.json every region of the account in the environment
  eas-scan scan --profile prod --regions cn-shanghai,cn-beijing --instance-status Running
  eas-scan scan --services my-llm --format csv -o llm.csv
  eas-scan scan --endpoint cn-shanghai=http://127.0.0.1:8001   a simulator or proxy

credentials come from the Alibaba Cloud default chain: ALIBABA_CLOUD_ACCESS_KEY_ID,
ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN), the aliyun CLI profile in
~/.aliyun/config.json (--profile or ALIBABA_CLOUD_PROFILE), ~/.alibabacloud/credentials.ini, or an
ECS RAM role. Secrets are never taken as flags.

exit codes: 0 complete, 3 finished but incomplete, 2 bad usage or configuration,
1 fatal (no credentials, every region refused, the output could not be written), 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that point at --help (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _csv_list(flag: str) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"{flag} takes a comma-separated list without empty items")
        return items

    return parse


def _positive(kind: type[int] | type[float], flag: str) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{flag} must be positive, got {text!r}")
        return value

    return parse


def _regions(text: str) -> list[str] | str:
    if text.strip() == "all":
        return "all"
    regions: list[str] = _csv_list("--regions")(text)
    for region in regions:
        try:
            validate_region(region)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return regions


def _endpoint(text: str) -> tuple[str, str]:
    region, sep, url = text.partition("=")
    if not sep or not region.strip() or not url.strip():
        raise argparse.ArgumentTypeError(
            f"--endpoint takes REGION=URL (e.g. cn-shanghai=http://127.0.0.1:8001), got {text!r}"
        )
    return region.strip(), url.strip()


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise argparse.ArgumentTypeError(f"--is-spot takes true or false, got {text!r}")


def _choices(values: Sequence[Any]) -> list[str]:
    return [str(value) for value in values]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eas-scan", description="Inventory every PAI-EAS service instance of an account.")
    parser.add_argument("--version", action="version", version=f"eas-scan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{scan,simulate}", parser_class=_Parser)

    scan = commands.add_parser(
        "scan",
        help="scan an account (or the simulator) and write every instance",
        description="Scan every region and service and stream each instance as one record.",
        epilog=SCAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = scan.add_argument_group("what to scan")
    where.add_argument(
        "--regions",
        metavar="all|R1,R2",
        type=_regions,
        help="regions to scan (default: all, or the --endpoint ones)",
    )
    where.add_argument(
        "--services", metavar="S1,S2", type=_csv_list("--services"), help="only these services"
    )
    where.add_argument("--service-filter", metavar="TEXT", help="only services whose name contains TEXT")
    where.add_argument(
        "--endpoint",
        metavar="REGION=URL",
        action="append",
        type=_endpoint,
        default=[],
        help="send a region's requests to URL (a simulator, a proxy); repeatable",
    )
    where.add_argument("--endpoint-type", choices=["public", "vpc"], default="public", help="default: public")
    where.add_argument("--profile", metavar="NAME", help="profile in ~/.aliyun/config.json")
    where.add_argument(
        "--simulate",
        nargs="?",
        const="small",
        choices=PRESETS,
        metavar="small|medium|large",
        help="scan the embedded simulator instead of an account (default preset: small)",
    )

    filters = scan.add_argument_group("instance filters (ListServiceInstances parameters)")
    filters.add_argument(
        "--filter", metavar="TEXT", help="instance name, instance IP, host IP or instance type"
    )
    filters.add_argument("--instance-status", metavar="S", help="e.g. Running")
    filters.add_argument("--instance-type", metavar="T", help="e.g. ecs.c7.large")
    filters.add_argument("--instance-ip", metavar="IP")
    filters.add_argument("--instance-name", metavar="N")
    filters.add_argument("--host-ip", metavar="IP")
    filters.add_argument("--resource-type", choices=_choices(list(ResourceType)))
    filters.add_argument("--role", choices=_choices(list(Role)))
    filters.add_argument("--is-spot", type=_bool, metavar="true|false")
    filters.add_argument("--sort", choices=_choices(list(InstanceSort)), help="default: StartTime")
    filters.add_argument("--order", choices=_choices(list(Order)), help="default: asc (new instances last)")
    filters.add_argument(
        "--page-size", type=_positive(int, "--page-size"), metavar="N", default=MAX_PAGE_SIZE, help="1-100"
    )

    knobs = scan.add_argument_group("speed and resilience")
    knobs.add_argument(
        "--concurrency",
        type=_positive(int, "--concurrency"),
        metavar="N",
        help=f"requests in flight (default {Concurrency().total})",
    )
    knobs.add_argument(
        "--rate-limit",
        type=_positive(float, "--rate-limit"),
        metavar="QPS",
        help="ceiling per region and API (default: none, adapts to throttling)",
    )
    knobs.add_argument(
        "--max-attempts",
        type=_positive(int, "--max-attempts"),
        metavar="N",
        help=f"per request (default {RetryPolicy().max_attempts})",
    )
    knobs.add_argument(
        "--timeout",
        type=_positive(float, "--timeout"),
        metavar="SECONDS",
        help=f"per request (default {Timeouts().total:g})",
    )

    out = scan.add_argument_group("output")
    out.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write records to FILE (default: stdout)"
    )
    out.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="default: jsonl")
    out.add_argument("--summary", metavar="FILE", type=Path, help="also write the summary as JSON to FILE")
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress (display, or log lines when not on a terminal)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress, no summary table: errors only")
    out.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="debug logging (which credentials are used, masked)",
    )

    commands.add_parser(
        "simulate",
        help="run the embedded EAS simulator on loopback (see eas-scan simulate --help)",
        add_help=False,
    )
    return parser


@dataclass
class ScanConfig:
    """The validated form of ``eas-scan scan``'s flags."""

    regions: list[str] | str | None
    services: list[str] | None
    service_filter: str | None
    endpoints: dict[str, str]
    endpoint_type: str
    profile: str | None
    simulate: str | None
    instance_filters: dict[str, Any]
    page_size: int
    concurrency: Concurrency
    rate_limit: RateLimit
    retry: RetryPolicy
    timeouts: Timeouts
    output: Path | None
    fmt: str
    summary: Path | None
    progress: bool
    quiet: bool
    verbose: int
    extra: dict[str, Any] = field(default_factory=dict)


def _config_from(args: argparse.Namespace) -> ScanConfig:
    if args.simulate and args.endpoint:
        raise ConfigError(
            "--simulate and --endpoint cannot be combined: the simulator brings its own endpoints"
        )
    if args.simulate and args.profile:
        raise ConfigError("--simulate and --profile cannot be combined: the simulator has its own keys")
    endpoints: dict[str, str] = {}
    for region, url in args.endpoint:
        if region in endpoints:
            raise ConfigError(f"--endpoint gives {region} twice")
        endpoints[region] = url
        try:
            EndpointResolver({region: url})
        except ConfigError as exc:
            raise ConfigError(f"--endpoint {region}={url}: {exc}") from None
    if args.page_size > MAX_PAGE_SIZE:
        raise ConfigError(
            f"--page-size must be at most {MAX_PAGE_SIZE} (the API's cap), got {args.page_size}"
        )
    filters = {
        "filter": args.filter,
        "instance_status": args.instance_status,
        "instance_type": args.instance_type,
        "instance_ip": args.instance_ip,
        "instance_name": args.instance_name,
        "host_ip": args.host_ip,
        "resource_type": args.resource_type,
        "role": args.role,
        "is_spot": args.is_spot,
        "sort": args.sort,
        "order": args.order,
    }
    defaults = Concurrency()
    concurrency = defaults
    if args.concurrency is not None:
        total = args.concurrency
        concurrency = Concurrency(
            total=total,
            per_region=min(defaults.per_region, total),
            pages_per_listing=min(defaults.pages_per_listing, total),
            services_per_region=defaults.services_per_region,
        )
    timeouts = Timeouts()
    if args.timeout is not None:
        timeouts = Timeouts(
            connect=min(timeouts.connect, args.timeout),
            read=min(timeouts.read, args.timeout),
            total=args.timeout,
        )
    if args.output is not None:
        check_writable(args.output)
    if args.summary is not None:
        check_writable(args.summary, what="summary", flag="--summary")
        if args.output is not None and args.summary.resolve() == args.output.resolve():
            raise ConfigError(
                f"--summary and -o both name {args.summary}: the summary would replace the records; "
                "choose another --summary path"
            )
    return ScanConfig(
        regions=args.regions,
        services=args.services,
        service_filter=args.service_filter,
        endpoints=endpoints,
        endpoint_type=args.endpoint_type,
        profile=args.profile,
        simulate=args.simulate,
        instance_filters={k: v for k, v in filters.items() if v is not None},
        page_size=args.page_size,
        concurrency=concurrency,
        rate_limit=RateLimit(requests_per_second=args.rate_limit),
        retry=RetryPolicy(max_attempts=args.max_attempts) if args.max_attempts else RetryPolicy(),
        timeouts=timeouts,
        output=args.output,
        fmt=args.format,
        summary=args.summary,
        progress=not (args.no_progress or args.quiet),
        quiet=args.quiet,
        verbose=args.verbose,
    )


def _configure_logging(config: ScanConfig) -> Callable[[], None]:
    """Log to stderr: warnings with --quiet, progress lines by default, debug with -v.

    Returns the function that puts the ``scanner`` logger back as it was (main may run in-process).
    """
    level = logging.WARNING if config.quiet else logging.DEBUG if config.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("scanner")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False

    def restore() -> None:
        root.handlers[:], root.level, root.propagate = saved

    return restore


class OutputClosed(ScannerError):
    """The output cannot take more records: its reader went away (EPIPE), or the disk is full."""


@dataclass
class _Outcome:
    code: int = EXIT_COMPLETE
    summary: ScanSummary | None = None
    interrupted: bool = False
    fatal: ScannerError | None = None


class _TempFile(Protocol):
    @property
    def temp_name(self) -> str | None: ...


class Interrupts:
    """SIGINT and SIGTERM for the whole run, from the flags to the summary.

    The first signal asks for a clean stop: the scan ends, the output is committed (whole lines)
    and the summary written, and the run exits 130. A second one is absorbed (``timeout`` and many
    supervisors send two): the stop goes on. Only a third ends the process at once, with 130: the
    temporary files are removed, no summary is written.

    The handler only counts and wakes the event loop (``call_soon_threadsafe``, as asyncio's own
    Ctrl-C handler does); what it would say is logged later, from the loop or the next safe point.
    It must not write to ``sys.stderr``: it may have interrupted a write to that very buffer.
    """

    SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
    FORCE_AFTER: Final = 3

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []
        self._reported = 0
        self._files: list[_TempFile] = []
        self._wake: Callable[[], object] | None = None
        self._stop: Callable[[], None] | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle the signals while the block runs (only the main thread can)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def track(self, file: _TempFile) -> None:
        """Remove ``file.temp_name`` (if any) on a forced exit."""
        self._files.append(file)

    @contextlib.contextmanager
    def stopping(self, stop: Callable[[], None]) -> Iterator[None]:
        """Run ``stop`` on the running event loop at the first signal (at once if one came already)."""
        loop = asyncio.get_running_loop()
        self._stop = stop
        self._wake = functools.partial(loop.call_soon_threadsafe, self._on_loop)
        try:
            if self.received:
                self._on_loop()
            yield
        finally:
            self._wake = self._stop = None

    def report(self) -> None:
        """Log the signals received since the last report (from a safe point, never the handler)."""
        for index in range(self._reported, len(self.received)):
            name = self.received[index].name
            if index == 0:
                log.warning("received %s: stopping", name)
            else:
                log.warning(
                    "received %s again: still stopping (a third signal stops at once, without a summary)",
                    name,
                )
        self._reported = len(self.received)

    def _on_loop(self) -> None:
        self.report()
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signal.Signals(signum))
        if len(self.received) >= self.FORCE_AFTER:
            self._force(signal.Signals(signum).name)
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                wake()

    def _force(self, name: str) -> NoReturn:
        left: list[str] = []
        for file in self._files:
            temp = file.temp_name
            if temp is None:
                continue
            try:
                os.unlink(temp)
            except FileNotFoundError:  # renamed into place a moment ago
                pass
            except OSError:
                left.append(temp)
        message = f"eas-scan: error: received {name} a third time: stopped at once, without a summary"
        if left:
            message += f"; temporary file(s) that could not be removed: {', '.join(left)}"
        with contextlib.suppress(OSError, ValueError):
            # Only if it cannot block: a stderr nobody reads must not hold up the exit.
            if select.select([], [2], [], 0)[1]:
                os.write(2, one_line(message).encode(errors="replace") + b"\n")
        os._exit(EXIT_INTERRUPTED)


def _same_terminal() -> bool:
    """Whether stdout and stderr are one terminal (records and the live display share a screen)."""
    try:
        return os.isatty(1) and os.isatty(2) and os.ttyname(1) == os.ttyname(2)
    except OSError:
        return False


async def _scan(
    config: ScanConfig,
    output: OutputFile,
    stderr: Console,
    interrupts: Interrupts,
    *,
    records_on_terminal: bool = False,
) -> _Outcome:
    outcome = _Outcome()
    stream: ScanStream | None = None

    def stop() -> None:
        outcome.interrupted = True
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
                **config.instance_filters,
            )
            outcome.summary, outcome.fatal = await _write_records(
                config, stream, output, stderr, records_on_terminal=records_on_terminal
            )
    if outcome.fatal is not None:
        outcome.code = EXIT_FATAL
    elif outcome.interrupted:
        outcome.code = EXIT_INTERRUPTED
    elif outcome.summary is not None and outcome.summary.complete:
        outcome.code = EXIT_COMPLETE
    else:
        outcome.code = EXIT_INCOMPLETE
    return outcome


async def _open_scanner(config: ScanConfig, stack: AsyncExitStack) -> Scanner:
    if config.simulate:
        from scanner.simulator import Simulator

        try:
            simulator = await stack.enter_async_context(Simulator(preset=config.simulate))
        except OSError as exc:  # no loopback interface, or no free port on it
            raise ScanFailedError(
                f"cannot start the embedded simulator on 127.0.0.1 ({exc.strerror or exc}): "
                "check that the loopback interface is up, or scan a real account without --simulate"
            ) from exc
        endpoints: dict[str, str] = dict(simulator.endpoints)
        outside = (
            [r for r in config.regions if r not in endpoints] if isinstance(config.regions, list) else []
        )
        if outside:
            # Unknown to the simulator, they would go to the real endpoints with its keys.
            raise ConfigError(
                f"--regions: the simulated fleet ({config.simulate}) has no {', '.join(outside)}; "
                f"it has {', '.join(endpoints)}"
            )
        credentials: Any = StaticCredentials(simulator.access_key_id, simulator.access_key_secret)
        log.info("simulator (%s) listening: %s", config.simulate, ", ".join(endpoints.values()))
    else:
        endpoints = config.endpoints
        credentials = DefaultCredentials(config.profile)
        # Fail now, clearly, before any request. The repr masks the key and omits the secret.
        log.debug("using %r", await credentials.get_credentials())
    return await stack.enter_async_context(
        Scanner(
            credentials=credentials,
            endpoints=endpoints or None,
            endpoint_type=config.endpoint_type,
            concurrency=config.concurrency,
            rate_limit=config.rate_limit,
            retry=config.retry,
            timeouts=config.timeouts,
            page_size=config.page_size,
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
    encoder = encoder_for(config.fmt)
    write = output.write
    fatal: ScannerError | None = None
    written = 0
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        if config.progress and stderr.is_terminal:
            display = stack.enter_context(TerminalProgress(stream.statistics, stderr))
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
                    write(encoder.encode(batch))
                    written += len(batch)
        except ScannerError as exc:  # fatal: raised once the records before it were delivered
            fatal = exc
        except OSError as exc:  # a full disk; `eas-scan scan | head`: nobody reads any more
            fatal = OutputClosed(_output_error(config.output, exc, "the scan was stopped"))
            await stream.aclose()
        finally:
            tg.cancel_scope.cancel()
    # Interrupted, the pages still buffered were dropped: count what reached the output.
    return dataclasses.replace(stream.summary, records=written), fatal


def _write_summary(out: OutputFile, summary: ScanSummary | None, code: int, error: str | None) -> None:
    document: dict[str, Any] = (
        summary.to_dict()
        if summary is not None
        else {"complete": False, "records": 0, "duration_s": 0.0, "requests": 0, "retries": 0,
              "throttled": 0, "regions": {}, "failures": []}
    )  # fmt: skip
    document["exit_code"] = code
    if error is not None:
        document["error"] = error
    if code == EXIT_INTERRUPTED:
        document["complete"] = False
    try:
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        out.commit()
    except BaseException:
        out.discard()
        raise


_WRITE_FIXES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space",
    errno.EISDIR: "give a file name",
    errno.ENOENT: "create its folder",
}


def _write_fix(exc: OSError, flag: str) -> str:
    fix = _WRITE_FIXES.get(exc.errno or 0)
    return f"{fix} or choose another {flag} path" if fix else f"choose another {flag} path"


def _output_error(path: Path | None, exc: OSError, consequence: str) -> str:
    """One line for records that could not be written, to stdout or to the -o file."""
    if path is None:
        if isinstance(exc, BrokenPipeError):
            return f"stdout was closed by its reader (broken pipe): {consequence}"
        return f"cannot write to stdout ({exc.strerror or exc}): {consequence}"
    return f"cannot write to {path} ({exc.strerror or exc}): {consequence}; {_write_fix(exc, '-o')}"


def _summary_write_error(
    path: Path, exc: OSError | ConfigError, *, records_written: bool, stuck: str | None = None
) -> str:
    """One line for a summary that could not be written once the scan was over.

    ``stuck`` names its temporary file, if that could not be removed either.
    """
    if isinstance(exc, ConfigError):  # the up-front check, failing now: the folder went away, ...
        message = str(exc)
    else:
        message = (
            f"cannot write the summary to {path} ({exc.strerror or exc}): {_write_fix(exc, '--summary')}"
        )
    if stuck is not None:
        message += f"; its temporary file {stuck} could not be removed"
    return message + ("; the records were written, only the summary is missing" if records_written else "")


def stderr_console() -> Console:
    """stderr for people: on a terminal, rich's own width; elsewhere (a log file, a pipe, journald)
    no width at all, so that each summary line and each failure stays one line that grep finds."""
    console = Console(stderr=True, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=True, soft_wrap=True, width=UNBOUNDED_WIDTH)
    return console


def run_scan(args: argparse.Namespace, *, stdout: Any = None, stderr: Console | None = None) -> int:
    err = stderr or stderr_console()

    def fail(code: int, message: str) -> int:
        # stderr itself may not take it (a full disk under `2>>log`): the exit code still tells.
        with contextlib.suppress(OSError):
            err.print(f"eas-scan: error: {one_line(message)}", highlight=False, markup=False, soft_wrap=True)
        return code

    with Interrupts().installed() as interrupts:
        try:
            config = _config_from(args)
        except ConfigError as exc:
            return fail(EXIT_USAGE, str(exc))
        restore_logging = _configure_logging(config)
        try:
            return _run(config, stdout, err, fail, interrupts)
        finally:
            restore_logging()


def _single_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one error a task group wrapped (several: the first), so it is reported as itself."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _report(config: ScanConfig, outcome: _Outcome, err: Console, *, summary_written: bool) -> None:
    """The summary table on stderr; with --quiet, one line if the scan is incomplete."""
    if outcome.summary is not None and not config.quiet:
        render_summary(outcome.summary, err)
    elif outcome.code == EXIT_INCOMPLETE and outcome.summary is not None:
        # --quiet keeps errors: a cron job's log should still say why the inventory is partial.
        failures = outcome.summary.failures
        first = failures[0] if failures else None
        err.print(
            f"eas-scan: incomplete: {len(failures)} failure(s)"
            + (f", first {first.region}/{first.service or '-'}: {first.code}" if first else "")
            + (f" (see {config.summary})" if config.summary and summary_written else ""),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _silence(stream: Any) -> None:
    """Point ``stream``'s fd at /dev/null: Python would otherwise report the failed write again at
    exit (and exit 120 for a stderr it cannot flush)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _run(
    config: ScanConfig,
    stdout: Any,
    err: Console,
    fail: Callable[[int, str], int],
    interrupts: Interrupts,
) -> int:
    real_stdout = stdout is None and config.output is None
    if real_stdout and sys.stdout is None:  # started with stdout closed (`>&-`)
        return fail(EXIT_USAGE, "stdout is closed: give -o FILE for the records")
    try:
        output = OutputFile(config.output, stream=stdout if stdout is not None else sys.stdout.buffer)
    except OSError as exc:  # the temporary file beside -o: no space or no inode left, a quota, ...
        return fail(
            EXIT_USAGE, f"cannot write to {config.output} ({exc.strerror or exc}): {_write_fix(exc, '-o')}"
        )
    except ConfigError as exc:  # -o was checked a moment ago, but the file system may have changed
        return fail(EXIT_USAGE, str(exc))
    interrupts.track(output)

    outcome = _Outcome()
    error: str | None = None
    try:
        try:
            with batch_gc():  # this process is the scan: ~10% less CPU (see scanner.gctuning)
                outcome = anyio.run(
                    functools.partial(
                        _scan,
                        config,
                        output,
                        err,
                        interrupts,
                        records_on_terminal=real_stdout and _same_terminal(),
                    )
                )
        except BaseExceptionGroup as group:
            raise _single_error(group) from None
        if outcome.fatal is not None:
            error = str(outcome.fatal)
            if isinstance(outcome.fatal, OutputClosed) and real_stdout:
                _silence(sys.stdout)
    except ConfigError as exc:
        outcome.code, error = EXIT_USAGE, str(exc)
    except CredentialsError as exc:
        outcome.code, error = EXIT_FATAL, str(exc)
    except ScannerError as exc:
        outcome.code, error = EXIT_FATAL, str(exc)
    except KeyboardInterrupt:
        outcome.code, error = EXIT_INTERRUPTED, "interrupted"
    except BaseException:
        output.discard()  # a bug: no half file in place of the previous one
        raise

    committed = outcome.code in (EXIT_COMPLETE, EXIT_INCOMPLETE, EXIT_INTERRUPTED)
    if committed:
        try:
            output.commit()
        except OSError as exc:  # the last buffered records, the fsync or the rename: a full disk, EIO
            output.discard()
            committed = False
            output_error = _output_error(
                config.output,
                exc,
                "the records were not saved" if config.output else "the last records were not written",
            )
            if real_stdout:
                _silence(sys.stdout)
            error = output_error if error is None else f"{error}; {output_error}"
            # Like a write that fails during the scan (1), unless the run already failed its own way.
            if outcome.code in (EXIT_COMPLETE, EXIT_INCOMPLETE):
                outcome.code = EXIT_FATAL
            if outcome.summary is not None:
                # The scan may have listed everything, but the inventory was not delivered.
                outcome.summary = dataclasses.replace(outcome.summary, complete=False)
    else:
        output.discard()
    if output.temp_name is not None:  # discarded, but the folder would not let it go
        stuck = f"its temporary file {output.temp_name} could not be removed"
        error = f"{error}; {stuck}" if error else stuck
    if not committed and config.output is not None and outcome.summary is not None:
        # `records` counts what the output holds: a discarded file holds none.
        outcome.summary = dataclasses.replace(outcome.summary, records=0)
    interrupts.report()
    if interrupts.received and outcome.code in (EXIT_COMPLETE, EXIT_INCOMPLETE):
        # A signal once the scan was over (while the records were saved) still means: stopped.
        # The exit code is decided here; a signal after this point changes nothing.
        outcome.code = EXIT_INTERRUPTED
    summary_error: str | None = None
    if config.summary is not None:
        # Checked before the scan, but the folder can vanish or the disk fill up while it runs.
        # The records are already in place (or discarded): this failure must not touch them.
        summary_file: OutputFile | None = None
        try:
            summary_file = OutputFile(config.summary, what="summary", flag="--summary")
            interrupts.track(summary_file)
            _write_summary(summary_file, outcome.summary, outcome.code, error)
        except (OSError, ConfigError) as exc:
            summary_error = _summary_write_error(
                config.summary,
                exc,
                records_written=committed,
                stuck=summary_file.temp_name if summary_file is not None else None,
            )
    with contextlib.suppress(OSError):  # an unwritable stderr, as in fail()
        _report(config, outcome, err, summary_written=summary_error is None)
    code = outcome.code
    if error is not None:
        fail(code, error)
    if summary_error is not None:
        # Like an output that cannot be written (1), unless the run already failed in its own way.
        code = EXIT_FATAL if code in (EXIT_COMPLETE, EXIT_INCOMPLETE) else code
        fail(code, summary_error)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulate"]:
        from scanner.simulator.standalone import main as simulate_main

        try:
            return simulate_main(args_list[1:], prog="eas-scan simulate")
        except SystemExit as exit_:  # --help, or a bad flag (argparse has printed why)
            return int(exit_.code or 0)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    code = run_scan(args)
    try:
        if sys.stderr is not None:
            sys.stderr.flush()  # the log lines still buffered
    except OSError:  # a full disk under `2>>log`: the records and the exit code still stand
        _silence(sys.stderr)
    return code
