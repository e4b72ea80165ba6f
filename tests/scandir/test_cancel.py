"""asyncio's own cancellation (``Task.cancel()``, ``asyncio.timeout``) while a part's thread works.

anyio shields its worker threads from anyio's cancellation only: a native cancellation raises at the
await while the thread goes on. These tests hold the thread at one step (a file system, or an
encoder, that waits on an event), cancel the task natively, and check that the writer waits for its
thread before it discards, unlocks or goes on: a step under way ends whole, one not started never
starts, and the cancellation still reaches the caller afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from scanner.scandir import FileSystem, PartEntry, PartRouter, ScanDirectory, ScanParams, Unit
from scanner.scandir import threads as scandir_threads
from scanner.scandir.formats import PartEncoder, iter_records, part_encoder
from scanner.scandir.layout import PARTS
from tests.scandir.fleet import records_by_region

RECORDS = records_by_region()["cn-shenzhen"]
UNIT = Unit(None, "cn-shenzhen")
FAILURE = {"region": "cn-shenzhen", "service": None, "code": "ServerError", "message": "gave up"}
#: Loop turns given to a cancelled task: far more than it needs to unwind when nothing holds it (1).
TURNS = 50


class Gate(FileSystem):
    """Holds a worker thread at one step of a part's life, ``at``, until ``release`` is set.

    Only worker threads are held (never the event loop), and only once.
    """

    def __init__(self) -> None:
        self.at: str | None = None
        self.entered = threading.Event()
        self.release = threading.Event()

    def step(self, step: str) -> None:
        if step == self.at and threading.current_thread() is not threading.main_thread():
            self.at = None
            self.entered.set()
            assert self.release.wait(30), "the test never released the thread"

    def lock(self, path: Path) -> int | None:
        fd = super().lock(path)
        self.step("lock")  # taken, not yet recorded by the writer
        return fd

    def create(self, path: Path) -> int:
        if path.name.startswith(".part-"):
            self.step("create-part")
        return super().create(path)

    def fsync(self, fd: int) -> None:
        self.step("fsync-part")  # the first fsync of a commit is its part's
        super().fsync(fd)

    def rename(self, source: Path, target: Path) -> None:
        self.step("rename-entry" if target.parent.name == Path(PARTS).name else "rename-part")
        super().rename(source, target)

    def fsync_dir(self, path: Path) -> None:
        if path.name.startswith("region="):
            self.step("fsync-part-folder")
        super().fsync_dir(path)

    def unlink(self, path: Path) -> None:
        if path.name.startswith("part-"):
            self.step("remove-old-part")
        super().unlink(path)

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.wait, 30), f"no thread reached {self.at}"


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.release.set()  # never leave a worker thread waiting, whatever the test did


@pytest.fixture(autouse=True)
def no_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scanner.scandir.directory._LOCK_WAIT_S", 0.0)  # a lock left held: at once


async def first_commit(directory: ScanDirectory) -> PartEntry:
    """The unit's entry before the cancelled run: incomplete, half the records."""
    async with directory.part(None, UNIT.region) as part:
        await part.write(RECORDS[:150])
        return await part.commit("incomplete", [FAILURE])


async def cancel_while_held(task: asyncio.Task[Any], gate: Gate, cancel: Callable[[], object]) -> None:
    """Once ``task``'s thread is held: cancel it, check it waits, release the thread."""
    await gate.wait_entered()
    cancel()
    for _ in range(TURNS):  # the task unwinds as far as it can
        if task.done():
            break
        await asyncio.sleep(0)
    assert not task.done()  # it waits for its thread: nothing is done under the thread's feet
    gate.release.set()


def assert_sound(directory: ScanDirectory) -> None:
    """Every entry's part whole; no temporary file; no part an entry does not name; no lock held."""
    assert directory.verify() == []
    root = directory.path
    assert not list(root.rglob("*.tmp"))
    named = {entry.file for entry in directory.entries().values() if entry.file}
    assert {str(path.relative_to(root)) for path in root.glob("region=*/part-*")} == named
    for path in (root / "_manifest/locks").iterdir():
        lock = directory._fs.lock(path)
        assert lock is not None, f"{path.name} is still locked"
        directory._fs.unlock(lock)


def rescanned_entry(directory: ScanDirectory) -> PartEntry:
    """The unit's entry, which must be the rescan's: complete, with every record."""
    entry = directory.entry(UNIT)
    assert entry is not None
    assert (entry.status, entry.records) == ("complete", len(RECORDS))
    return entry


def records_of(directory: ScanDirectory, entry: PartEntry) -> list[dict[str, Any]]:
    assert entry.file is not None
    return list(iter_records(directory.path / entry.file, entry.format))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "step", ["fsync-part", "rename-part", "fsync-part-folder", "rename-entry", "remove-old-part"]
)
async def test_a_commit_cancelled_by_asyncio_ends_whole(tmp_path: Path, gate: Gate, step: str) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(), fs=gate)
    await first_commit(directory)
    routers: list[PartRouter] = []

    async def rescan() -> None:
        async with PartRouter(directory) as router:
            routers.append(router)
            await router.write(RECORDS)
            await router.commit(None, UNIT.region)

    gate.at = step
    task = asyncio.create_task(rescan())
    # Task.cancel(): what asyncio.run() does at Ctrl-C, or an asyncio.TaskGroup when a sibling fails.
    await cancel_while_held(task, gate, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task  # the cancellation still reaches the caller, once the commit has ended

    entry = rescanned_entry(directory)
    assert records_of(directory, entry) == RECORDS
    assert routers[0].entries == [entry]  # the router knows the unit was committed
    assert_sound(directory)
    assert directory.resume_plan(ScanParams()).complete == {UNIT}  # --resume keeps it


@pytest.mark.asyncio
async def test_an_asyncio_timeout_during_a_commit_waits_for_it(tmp_path: Path, gate: Gate) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(), fs=gate)
    await first_commit(directory)
    deadlines: list[asyncio.Timeout] = []

    async def rescan() -> None:
        async with asyncio.timeout(None) as deadline:
            deadlines.append(deadline)
            async with directory.part(None, UNIT.region) as part:
                await part.write(RECORDS)
                await part.commit()

    gate.at = "rename-entry"
    task = asyncio.create_task(rescan())
    now = asyncio.get_running_loop().time
    await cancel_while_held(task, gate, lambda: deadlines[0].reschedule(now()))  # the deadline is now
    with pytest.raises(TimeoutError):  # asyncio.timeout still turns its cancellation into TimeoutError
        await task
    rescanned_entry(directory)
    assert_sound(directory)


@pytest.mark.asyncio
async def test_a_second_cancellation_during_the_wait_changes_nothing(tmp_path: Path, gate: Gate) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(), fs=gate)
    await first_commit(directory)

    async def rescan() -> None:
        async with directory.part(None, UNIT.region) as part:
            await part.write(RECORDS)
            await part.commit()

    def cancel_twice() -> None:
        task.cancel()
        task.get_loop().call_soon(task.cancel)  # once the first was delivered: a second Ctrl-C

    gate.at = "rename-part"
    task = asyncio.create_task(rescan())
    await cancel_while_held(task, gate, cancel_twice)
    with pytest.raises(asyncio.CancelledError):
        await task
    rescanned_entry(directory)
    assert_sound(directory)


@pytest.mark.asyncio
async def test_a_commit_cancelled_before_its_thread_started_leaves_the_previous_entry(tmp_path: Path) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    before = await first_commit(directory)
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = 1  # of this test's event loop only
    free = threading.Event()
    written = asyncio.Event()
    go = asyncio.Event()

    async def rescan() -> None:
        async with PartRouter(directory) as router:
            await router.write(RECORDS)
            written.set()
            await go.wait()
            await router.commit(None, UNIT.region)

    async def turns_until(condition: Callable[[], bool]) -> None:
        for _ in range(TURNS):
            if condition():
                return
            await asyncio.sleep(0)
        raise AssertionError("never happened")

    task = asyncio.create_task(rescan())
    await written.wait()
    holder = asyncio.create_task(anyio.to_thread.run_sync(free.wait, 30))  # takes the one thread
    await turns_until(lambda: limiter.statistics().borrowed_tokens == 1)
    go.set()
    await turns_until(lambda: limiter.statistics().tasks_waiting == 1)  # the commit waits for a thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    free.set()
    assert await holder

    assert directory.entry(UNIT) == before
    assert records_of(directory, before) == RECORDS[:150]
    assert_sound(directory)


@pytest.mark.asyncio
async def test_a_commit_its_thread_picks_up_after_the_cancellation_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race anyio leaves open: the call was queued for a worker thread, the task was cancelled,
    and the worker, already past its own check of the cancellation, runs the call a moment later."""
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams())
    before = await first_commit(directory)
    run_sync = anyio.to_thread.run_sync
    late: list[Callable[[], Any]] = []

    async def cancelled_once_queued(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not late and isinstance(func, scandir_threads._Call):
            late.append(func)
            raise asyncio.CancelledError
        return await run_sync(func, *args, **kwargs)

    async with directory.part(None, UNIT.region) as part:
        await part.write(RECORDS)
        monkeypatch.setattr(anyio.to_thread, "run_sync", cancelled_once_queued)
        with pytest.raises(asyncio.CancelledError):
            await part.commit()
        monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
        assert part.entry is None
    with pytest.raises(scandir_threads._NotRun):
        await run_sync(late[0])  # the worker thread, late: the commit does not run
    assert directory.entry(UNIT) == before
    assert_sound(directory)


@pytest.mark.asyncio
@pytest.mark.parametrize(("step", "region"), [("lock", "cn-hangzhou"), ("create-part", "cn-shenzhen")])
async def test_opening_cancelled_by_asyncio_leaves_no_lock_and_no_leftover(
    tmp_path: Path, gate: Gate, step: str, region: str
) -> None:
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(), fs=gate)
    before = await first_commit(directory)

    async def opening() -> None:
        async with directory.part(None, region):
            raise AssertionError("cancelled while it opened")

    gate.at = step
    task = asyncio.create_task(opening())
    await cancel_while_held(task, gate, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert directory.entry(UNIT) == before
    assert_sound(directory)
    async with directory.part(None, region) as part:  # the lock was released: no PartBusyError
        await part.write(RECORDS)
        await part.commit()
    assert_sound(directory)


class HeldEncoder:
    """The real encoder of a part, whose ``encode`` holds its thread at the gate's step "encode"."""

    def __init__(self, inner: PartEncoder, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    def header(self) -> bytes:
        return self.inner.header()

    def encode(self, records: list[dict[str, Any]]) -> bytes:
        self.gate.step("encode")
        return self.inner.encode(records)

    def finish(self) -> bytes:
        return self.inner.finish()


@pytest.mark.asyncio
async def test_a_parquet_page_cancelled_while_encoded_is_in_the_part_whole(
    tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that catches the cancellation and commits what it has (as incomplete) gets a part
    whose entry counts what the file holds: the encoder's output for the page was not dropped."""

    def held_encoder(fmt: str, *, account_column: bool = False) -> PartEncoder:
        return HeldEncoder(part_encoder(fmt, account_column=account_column), gate)

    monkeypatch.setattr("scanner.scandir.directory.part_encoder", held_encoder)
    directory = ScanDirectory.create_or_open(tmp_path, ScanParams(format="parquet"))
    async with directory.part(None, UNIT.region) as part:
        await part.write(RECORDS[:100])
        gate.at = "encode"
        task = asyncio.create_task(part.write(RECORDS[100:200]))
        await cancel_while_held(task, gate, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task
        entry = await part.commit("incomplete", [FAILURE])
    assert entry.records == 200
    assert records_of(directory, entry) == RECORDS[:200]
    assert_sound(directory)
