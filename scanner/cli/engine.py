"""``--engine local|ray`` and the Ray engine's flags (``--ray-address``, ``--workers``,
``--units-per-worker``), checked before any request. The Ray engine's scan itself is
``scanner.cli.ray_scan`` (imported only when ``--engine ray`` is given)."""

from __future__ import annotations

import argparse
import functools
import importlib.util
from dataclasses import dataclass

from scanner import ConfigError

__all__ = [
    "ENGINES",
    "RAY_EXTRA_HINT",
    "EngineOptions",
    "add_engine_flags",
    "engine_options",
    "ray_installed",
]

ENGINES = ("local", "ray")
#: Ray workers when --workers is not given (``scan_with_ray``'s default).
DEFAULT_WORKERS = 2
#: Units each worker scans at once when --units-per-worker is not given (``scan_with_ray``'s
#: default, ``scanner.distributed.DEFAULT_UNITS_PER_WORKER``: not imported here, this module must
#: not import the distributed package for a local scan; a test keeps the two equal).
DEFAULT_UNITS_PER_WORKER = 8
RAY_EXTRA_HINT = "--engine ray needs the optional extra: pip install 'eas-fleet-scanner[ray]'"


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """``--engine``, and the Ray engine's ``--ray-address``, ``--workers`` and ``--units-per-worker``."""

    name: str = "local"
    #: None: start Ray on this machine (loopback only); ``auto`` or ``ray://host:10001``: join.
    ray_address: str | None = None
    workers: int = DEFAULT_WORKERS
    units_per_worker: int = DEFAULT_UNITS_PER_WORKER


def add_engine_flags(group: argparse._ArgumentGroup) -> None:
    """The engine's flags, in ``group``."""
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: Ray workers, with --output-dir "
        "(needs the extra eas-fleet-scanner[ray])",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --engine ray: join this Ray cluster (auto, ray://host:10001); default: start Ray "
        "on this machine. On a cluster, DIR must be a shared file system mounted at the same path",
    )
    group.add_argument(
        "--workers",
        type=functools.partial(_positive_int, "--workers"),
        metavar="N",
        help=f"with --engine ray: Ray workers (default {DEFAULT_WORKERS})",
    )
    group.add_argument(
        "--units-per-worker",
        type=functools.partial(_positive_int, "--units-per-worker"),
        metavar="N",
        help="with --engine ray: (account, region) units each worker scans at once, each paced by "
        f"its own API quota (default {DEFAULT_UNITS_PER_WORKER})",
    )


def _positive_int(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{flag} must be positive, got {text!r}")
    return value


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine ``args`` asks for; a ``ConfigError`` (exit 2, before any request) when it cannot work."""
    name = getattr(args, "engine", None) or "local"
    address: str | None = getattr(args, "ray_address", None)
    workers: int | None = getattr(args, "workers", None)
    per_worker: int | None = getattr(args, "units_per_worker", None)
    if name != "ray":
        for flag, value in (
            ("--ray-address", address),
            ("--workers", workers),
            ("--units-per-worker", per_worker),
        ):
            if value is not None:
                raise ConfigError(f"{flag} needs --engine ray")
        return EngineOptions()
    if getattr(args, "output_dir", None) is None:
        raise ConfigError(
            "--engine ray needs --output-dir DIR (the workers write the scan directory's parts)"
        )
    if address is not None and not address.strip():
        raise ConfigError("--ray-address is empty: give auto, or ray://host:10001")
    if not ray_installed():
        raise ConfigError(RAY_EXTRA_HINT)
    return EngineOptions(
        name="ray",
        ray_address=address,
        workers=workers or DEFAULT_WORKERS,
        units_per_worker=per_worker or DEFAULT_UNITS_PER_WORKER,
    )


def ray_installed() -> bool:
    """Whether ``ray`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False
