"""A process that writes the test fleet into a scan directory, to be killed or run side by side.

``python -m tests.scandir.writer DIR [--shard I/N] [--page N] [--pause S] [--format F]
[--incomplete REGION] [--crash-at POINT [--crash-in REGION]]``: resumes DIR (removing leftovers),
records every region as expected, and writes the regions of its shard not yet complete, a page at a
time. ``--crash-at`` stops the process (``os._exit``, no clean-up, like SIGKILL) at one step of a
commit: the first commit, or the commit of ``--crash-in``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio
import orjson

from scanner.scandir import FileSystem, ScanDirectory, ScanParams
from scanner.scandir.layout import PARTS
from tests.scandir.fleet import records_by_region

CRASH_POINTS = (
    "before-part-rename",
    "after-part-rename",
    "before-entry-rename",
    "after-entry-rename",
    "before-old-part-removal",
)
FAILURE = {"region": "cn-shenzhen", "service": None, "code": "ServerError", "message": "gave up"}


class CrashingFileSystem(FileSystem):
    """Exits the process, without any clean-up, at ``point`` of the first commit once ``armed``."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.armed = True

    def _crash(self, point: str) -> None:
        if self.armed and point == self.point:
            os._exit(137)

    def rename(self, source: Path, target: Path) -> None:
        kind = "entry" if target.parent.name == Path(PARTS).name else "part"
        if kind == "part" and not target.name.startswith("part-"):
            super().rename(source, target)  # a run file
            return
        self._crash(f"before-{kind}-rename")
        super().rename(source, target)
        self._crash(f"after-{kind}-rename")

    def unlink(self, path: Path) -> None:
        if path.name.startswith("part-"):
            self._crash("before-old-part-removal")
        super().unlink(path)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--format", default="jsonl")
    parser.add_argument("--incomplete", default=None)
    parser.add_argument("--crash-at", choices=CRASH_POINTS, default=None)
    parser.add_argument("--crash-in", default=None)
    args = parser.parse_args(argv)
    index, count = (int(part) for part in args.shard.split("/"))
    by_region = records_by_region()
    params = ScanParams(format=args.format, regions=tuple(by_region))
    fs = CrashingFileSystem(args.crash_at) if args.crash_at else None
    if fs is not None and args.crash_in is not None:
        fs.armed = False  # until the commit of that region
    directory = ScanDirectory.create_or_open(args.dir, params, fs=fs)
    positions = {region: position for position, region in enumerate(sorted(by_region))}
    plan = directory.resume_plan(params, owns=lambda unit: positions[unit.region] % count == index)
    directory.expect((None, region) for region in by_region)
    sys.stderr.write("ready\n")
    sys.stderr.flush()
    written = []
    for position, (region, records) in enumerate(sorted(by_region.items())):
        if position % count != index or not plan.should_scan(None, region):
            continue
        incomplete = region == args.incomplete
        if incomplete:
            records = records[: len(records) // 2]
        async with directory.part(None, region) as part:
            for start in range(0, len(records), args.page):
                await part.write(records[start : start + args.page])
                if args.pause:
                    await anyio.sleep(args.pause)  # a slow listing, in a process made to be killed
            if fs is not None and region == args.crash_in:
                fs.armed = True
            if incomplete:
                await part.commit("incomplete", [FAILURE])
            else:
                await part.commit("complete")
        written.append(region)
    directory.finish_run()
    sys.stdout.write(orjson.dumps({"written": written, "removed": list(plan.removed)}).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
