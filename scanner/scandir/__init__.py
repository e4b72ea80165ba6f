"""Scan directories: one part per (account, region), a manifest, resume after any crash, and diff.

::

    directory = ScanDirectory.create_or_open("scan/", ScanParams(format="parquet"))
    plan = directory.resume_plan(params)                  # what is complete, what to scan
    async with directory.part(None, "cn-hangzhou") as part:
        await part.write(page)
        await part.commit("complete")
    directory.status()                                    # {"complete", "records", "parts", ...}
"""

from __future__ import annotations

from scanner.scandir.diff import DiffSummary, diff_exit_code, diff_scans, status_exit_code
from scanner.scandir.directory import (
    PartBusyError,
    PartEntry,
    PartStatus,
    PartWriter,
    ResumePlan,
    ScanDirectory,
    combined_status,
    merged_entries,
    status_table,
)
from scanner.scandir.formats import FORMATS, Format, check_format
from scanner.scandir.fs import FileSystem, OsFileSystem
from scanner.scandir.layout import Unit
from scanner.scandir.params import ScanParams
from scanner.scandir.router import Outcome, PartRouter, outcomes_from_summary

__all__ = [
    "FORMATS",
    "DiffSummary",
    "FileSystem",
    "Format",
    "OsFileSystem",
    "Outcome",
    "PartBusyError",
    "PartEntry",
    "PartRouter",
    "PartStatus",
    "PartWriter",
    "ResumePlan",
    "ScanDirectory",
    "ScanParams",
    "Unit",
    "check_format",
    "combined_status",
    "diff_exit_code",
    "diff_scans",
    "merged_entries",
    "outcomes_from_summary",
    "status_exit_code",
    "status_table",
]
