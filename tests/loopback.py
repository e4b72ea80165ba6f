"""Tiny servers on 127.0.0.1, port 0, for tests that need real sockets.

``serve_app`` runs an ``aiohttp.web`` app; ``serve_raw`` runs a bare asyncio server whose
handler sees the exact request bytes and can misbehave (close mid-body, never answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["RawRequest", "serve_app", "serve_raw"]


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app``; yields its base URL ``http://127.0.0.1:PORT``."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class RawRequest:
    """One request as received: the request line and headers, undecoded."""

    request_line: str
    headers: list[tuple[str, str]]
    peer_port: int

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]


@dataclass
class RawServer:
    base_url: str
    requests: list[RawRequest] = field(default_factory=list)


RawHandler = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve_raw(handler: RawHandler) -> AsyncIterator[RawServer]:
    """A bare HTTP/1.1 server: reads each request head, records it, and lets ``handler`` answer."""
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []
    state = RawServer(base_url="")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.append(writer)
        peer_port = writer.get_extra_info("peername")[1]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = [
                    (name.strip(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                ]
                request = RawRequest(lines[0], headers, peer_port)
                state.requests.append(request)
                await handler(request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    state.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for writer in writers:
            writer.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
