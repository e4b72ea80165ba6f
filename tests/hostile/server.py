"""A hostile PAI-EAS API on loopback: an honest fleet, and hooks to misbehave like real servers do.

Speaks just enough of EAS (2021-07-01) for a scan: ``GET /api/v2/services`` (ListServices) and
``GET /api/v2/services/{ClusterId}/{ServiceName}/instances`` (ListServiceInstances), paged by
``PageNumber``/``PageSize`` (capped at 100), with the JSON shapes of the official SDK's models
(/work/shared/research/eas-api.md). Signatures are not checked: the scanner under test is the
client, and what matters here is how it copes with the answers.

One port per region (ListServices has no region in its path: the endpoint is the region), plus a
"thief" on another loopback host (127.0.0.2 when it can be bound) that only records what reaches
it: the target of a hostile redirect. The server runs on its own event loop in a thread, so the
scanner under test can run as a real subprocess against it.

A *behaviour* is an ``async`` callable ``(server, call) -> response | None``; ``None`` means "answer
honestly". It sees every request as a ``Call`` (region, action, service, paging, and how many times
this very page was asked for before), and builds its answer with the helpers below. Every request
is logged (``server.count``) so tests can count them, and every instance the server handed out in a
page is remembered (``server.served``) so tests can check that nothing valid was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
import traceback
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

__all__ = [
    "ERROR_CONTENT_TYPE",
    "MAX_PAGE_SIZE",
    "SERVICE_SUMMARY_FIELDS",
    "Behaviour",
    "Call",
    "Fleet",
    "FleetService",
    "HostileServer",
    "Response",
    "cut_body",
    "error_response",
    "expected_record",
    "gzip_bomb",
    "huge_body",
    "json_response",
    "make_fleet",
    "raw_response",
    "reshaped",
    "xml_error_response",
]

#: The API caps PageSize at 100.
MAX_PAGE_SIZE: Final = 100
ERROR_CONTENT_TYPE: Final = "application/json;charset=utf-8"

#: The Service fields copied into every record (README, "Records").
SERVICE_SUMMARY_FIELDS: Final = (
    "ServiceId",
    "ServiceUid",
    "Status",
    "ServiceGroup",
    "Resource",
    "ResourceAlias",
    "WorkspaceId",
    "Labels",
    "CreateTime",
)

_SERVICES_PATH: Final = "/api/v2/services"
_TRACKED_PAGES: Final = 10_000
_LOGGED_CALLS: Final = 5_000


# --- the fleet ---------------------------------------------------------------------------------


@dataclass
class FleetService:
    """A service as ListServices returns it, and its instances oldest first."""

    service: dict[str, Any]
    instances: list[dict[str, Any]]

    @property
    def name(self) -> str:
        name: str = self.service["ServiceName"]
        return name


#: region -> its services, in ListServices order.
Fleet = dict[str, list[FleetService]]


def _instance(region_index: int, service_index: int, service: str, region: str, i: int) -> dict[str, Any]:
    # Every field of the SDK's Instance model, with varied types (nested lists, floats, bools,
    # non-ASCII text), so a record that is not passed through untouched shows.
    return {
        "InstanceName": f"{service}-{i:04d}-{(i * 7919 + service_index) % 99991:05d}",
        "Status": "Running" if i % 5 else "Pending",
        "InnerIP": f"10.{region_index}.{service_index}.{i}",
        "HostIP": f"11.0.{service_index}.{i % 7}",
        "HostName": f"host-{service_index}-{i % 7}",
        "ExternalIP": "",
        "ExternalInstancePort": 0,
        "InstancePort": 8000,
        "InstanceType": "ecs.c7.large",
        "IsSpot": i % 2 == 0,
        "Isolated": False,
        "LastState": [{"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-11-30T01:02:03Z"}]
        if i % 3 == 0
        else [],
        "Namespace": service,
        "CurrentAmount": 0.25 * (i % 4),
        "OriginalAmount": 1.0,
        "ReadyProcesses": 1,
        "TotalProcesses": 1,
        "Reason": "重启: liveness probe failed" if i % 4 == 1 else "",
        "ResourceType": "PublicResource",
        "RestartCount": i % 3,
        "Role": "Standard",
        "StartAt": f"2026-11-{1 + i // 1440 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
        "StartTime": f"2026-11-{1 + i // 1440 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
        "TenantHostIP": "",
        "TenantInstanceIP": "",
        "Zone": f"{region}-a",
    }


def make_fleet(regions: Sequence[str], sizes: Mapping[str, int]) -> Fleet:
    """The same services (name -> instance count) in every region, deterministic."""
    fleet: Fleet = {}
    for region_index, region in enumerate(regions):
        services = []
        for service_index, (name, count) in enumerate(sizes.items()):
            service = {
                "ServiceName": name,
                "ServiceId": f"eas-m-{region_index}{service_index:03d}",
                "ServiceUid": f"eas-m-{region}-{name}",
                "Status": "Running",
                "ServiceGroup": name,
                "Resource": "eas-r-shared",
                "ResourceAlias": "",
                "WorkspaceId": "1234",
                "Labels": [{"LabelKey": "team", "LabelValue": "ml"}],
                "CreateTime": f"2026-01-{1 + service_index:02d}T00:00:00Z",
                "Region": region,
                "TotalInstance": count,
                "RunningInstance": count,
                "Cpu": 2,
                "Memory": 4000,
                "Image": "registry.example/model:1",
                "ServiceConfig": json.dumps({"name": name, "metadata": {"instance": count}}),
            }
            instances = [_instance(region_index, service_index, name, region, i) for i in range(count)]
            services.append(FleetService(service, instances))
        fleet[region] = services
    return fleet


def expected_record(region: str, service: FleetService, instance: Mapping[str, Any]) -> dict[str, Any]:
    """The record README promises for an instance: the instance untouched, plus three tags."""
    summary = {name: service.service[name] for name in SERVICE_SUMMARY_FIELDS if name in service.service}
    return {**instance, "ClusterId": region, "ServiceName": service.name, "Service": summary}


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request as the server saw it."""

    region: str  # "" on the thief
    action: str  # "ListServices", "ListServiceInstances", or "other"
    service: str | None
    page_number: int | None
    page_size: int | None
    #: 1 for the first request of this (region, action, service, page_number, page_size), and so
    #: on (0 past the first 10,000 distinct pages: a runaway scan must not fill the test's memory).
    nth: int
    headers: Mapping[str, str]
    request: web.Request = field(repr=False, compare=False)

    @property
    def number(self) -> int:
        """The page asked for (1 when absent)."""
        return self.page_number or 1

    @property
    def size(self) -> int:
        """The page size the honest API would use: as asked, capped at 100 (100 when absent)."""
        return min(self.page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)


Response = web.StreamResponse
Behaviour = Callable[["HostileServer", Call], Awaitable[Response | None]]


def _int_param(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _parse(region: str, request: web.Request) -> tuple[str, str | None]:
    path = request.path  # percent-decoded
    if path == _SERVICES_PATH:
        return "ListServices", None
    prefix = _SERVICES_PATH + "/"
    if path.startswith(prefix) and path.endswith("/instances"):
        middle = path[len(prefix) : -len("/instances")]
        cluster, _, service = middle.partition("/")
        if cluster == region and service:
            return "ListServiceInstances", service
    return "other", None


# --- responses ---------------------------------------------------------------------------------


def json_response(
    data: Any,
    *,
    status: int = 200,
    content_type: str = "application/json;charset=utf-8",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return raw_response(body, status=status, content_type=content_type, headers=headers)


def raw_response(
    body: bytes,
    *,
    status: int = 200,
    content_type: str = "application/json;charset=utf-8",
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(status=status, body=body, headers={**(headers or {}), "Content-Type": content_type})


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The API's JSON error shape."""
    body = {"RequestId": "E5C6B4A1-0000-4000-8000-HOSTILE", "Code": code, "Message": message}
    return json_response(body, status=status, content_type=ERROR_CONTENT_TYPE, headers=headers)


def xml_error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The API's error in XML, as Alibaba's gateways send it (the SDK reads it for ``text/xml``)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        "  <RequestId>E5C6B4A1-0000-4000-8000-HOSTILEXML</RequestId>\n"
        "  <HostId>pai-eas.cn-hangzhou.aliyuncs.com</HostId>\n"
        f"  <Code>{code}</Code>\n  <Message>{message}</Message>\n"
        "  <Recommend><![CDATA[https://api.aliyun.com/troubleshoot?q=" + code + "]]></Recommend>\n"
        "</Error>\n"
    ).encode()
    return raw_response(body, status=status, content_type="text/xml;charset=utf-8", headers=headers)


def reshaped(
    response: web.StreamResponse,
    *,
    data: Callable[[Any], Any] | None = None,
    prefix: bytes = b"",
) -> web.StreamResponse:
    """``response`` (a whole JSON answer) with its decoded body passed through ``data``, and
    ``prefix`` (a byte order mark, say) before its bytes. Status and headers are kept."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return response
    body = response.body
    if data is not None:
        body = json.dumps(data(json.loads(body)), ensure_ascii=False, separators=(",", ":")).encode()
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return web.Response(status=response.status, body=prefix + body, headers=headers)


async def _write_quietly(response: web.StreamResponse, chunks: Iterable[bytes]) -> None:
    """Write until done or until the client hangs up (what a client that caps a body does)."""
    with contextlib.suppress(ConnectionError):
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()


async def huge_body(
    request: web.Request, size: int, *, announce: bool = True, chunk: int = 1 << 20
) -> web.StreamResponse:
    """A 200 ListServiceInstances page of ``size`` bytes, valid JSON if read whole (one huge field).

    ``announce``: with a Content-Length, else chunked (only reading it tells how large it is).
    """
    head = (
        b'{"RequestId":"HUGE","TotalCount":1,"PageNumber":1,"PageSize":100,'
        b'"Instances":[{"InstanceName":"huge","Pad":"'
    )
    tail = b'"}]}'
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json;charset=utf-8"})
    if announce:
        response.content_length = size
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    filler = b"x" * chunk
    remaining = size - len(head) - len(tail)

    def chunks() -> Iterable[bytes]:
        nonlocal remaining
        yield head
        while remaining > 0:
            piece = filler if remaining >= chunk else filler[:remaining]
            remaining -= len(piece)
            yield piece
        yield tail

    await _write_quietly(response, chunks())
    return response


_BOMB_CACHE: dict[int, tuple[bytes, bytes, int, bytes]] = {}


def _bomb_parts(mib: int) -> tuple[bytes, bytes, int, bytes]:
    """(gzip head, one repeated deflate block, how many, tail) of a JSON page with ``mib`` MiB of "0"."""
    cached = _BOMB_CACHE.get(mib)
    if cached is not None:
        return cached
    prefix = (
        b'{"RequestId":"BOMB","TotalCount":1,"PageNumber":1,"PageSize":100,'
        b'"Instances":[{"InstanceName":"bomb","Pad":"'
    )
    suffix = b'"}]}'
    block_input = b"0" * (1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    # A full flush resets the compressor's history, so the same input compresses to the same bytes
    # every time: one compressed MiB, sent ``mib`` times, is a valid stream of ``mib`` MiB.
    first = deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(block_input) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(block_input) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert block == again, "zlib does not repeat a fully flushed block byte for byte"
    last = deflate.compress(suffix) + deflate.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(mib):
        crc = zlib.crc32(block_input, crc)
    crc = zlib.crc32(suffix, crc)
    size = (len(prefix) + mib * len(block_input) + len(suffix)) & 0xFFFFFFFF
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first  # gzip member header, no name, no mtime
    tail = last + crc.to_bytes(4, "little") + size.to_bytes(4, "little")
    parts = (head, block, mib, tail)
    _BOMB_CACHE[mib] = parts
    return parts


async def gzip_bomb(request: web.Request, mib: int = 1024) -> web.StreamResponse:
    """A 200 page sent with ``Content-Encoding: gzip``: ~1 MB on the wire, ``mib`` MiB decompressed."""
    head, block, count, tail = _bomb_parts(mib)
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "application/json;charset=utf-8", "Content-Encoding": "gzip"},
    )
    response.content_length = len(head) + count * len(block) + len(tail)
    await response.prepare(request)

    def chunks() -> Iterable[bytes]:
        yield head
        batch = block * 64
        whole, rest = divmod(count, 64)
        for _ in range(whole):
            yield batch
        yield block * rest
        yield tail

    await _write_quietly(response, chunks())
    return response


async def cut_body(request: web.Request, body: bytes, sent: int) -> web.StreamResponse:
    """Promise ``len(body)`` bytes (Content-Length), send ``sent`` of them, and drop the connection."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json;charset=utf-8"})
    response.content_length = len(body)
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        await response.write(body[:sent])
    transport = request.transport
    if transport is not None:
        transport.abort()
    return response


# --- the server --------------------------------------------------------------------------------


class HostileServer:
    """The fleet on one loopback port per region, misbehaving as ``behaviour`` says.

    ``with HostileServer(fleet, behaviour) as server:``; ``server.endpoints`` maps each region to
    its base URL, ``server.thief_url`` is the redirect target on another host.
    """

    def __init__(
        self, fleet: Fleet, behaviour: Behaviour | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.fleet = fleet
        self.behaviour = behaviour
        #: Serve the regions over https with this context (the thief stays plain http).
        self.tls = tls
        self.endpoints: dict[str, str] = {}
        self.thief_url = ""
        #: (region, action, service, PageNumber, PageSize) of the first 5,000 requests (``count``
        #: counts them all).
        self.calls: list[tuple[str, str, str | None, int | None, int | None]] = []
        self._counts: Counter[tuple[str, str, str | None]] = Counter()
        #: (region, service) -> names of the instances handed out in pages of more than one record
        #: (not in one-record pages: those are a client's looks at a listing's end, not its pages).
        self.served: dict[tuple[str, str], set[str]] = {}
        #: exceptions raised by a behaviour (a bug in a test, answered with a 500 and kept here).
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._seen: Counter[tuple[str, str, str | None, int | None, int | None]] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._closing: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="hostile-eas", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(30)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()
            self._loop = self._thread = None

    async def _serve(self, app: web.Application, host: str, tls: ssl.SSLContext | None = None) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, 0, ssl_context=tls)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        for region in self.fleet:
            app = web.Application()
            app.router.add_route("GET", "/{tail:.*}", self._handler(region))
            port = await self._serve(app, "127.0.0.1", self.tls)
            scheme = "https" if self.tls is not None else "http"
            self.endpoints[region] = f"{scheme}://127.0.0.1:{port}"
        thief = web.Application()
        thief.router.add_route("*", "/{tail:.*}", self._handler(""))
        host = "127.0.0.2" if _can_bind("127.0.0.2") else "localhost"
        port = await self._serve(thief, host)
        self.thief_url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # releases every ``hold``
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    # --- requests ------------------------------------------------------------------------------

    def _handler(self, region: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            action, service = _parse(region, request) if region else ("other", None)
            number = _int_param(request.query.get("PageNumber"))
            size = _int_param(request.query.get("PageSize"))
            key = (region, action, service, number, size)
            with self._lock:
                if key in self._seen or len(self._seen) < _TRACKED_PAGES:
                    self._seen[key] += 1
                nth = self._seen.get(key, 0)
                self._counts[(region, action, service)] += 1
                call = Call(region, action, service, number, size, nth, request.headers, request)
                if len(self.calls) < _LOGGED_CALLS:
                    self.calls.append(key)
            if not region:  # the thief: it only takes note
                return web.Response(status=200, text="{}", content_type="application/json")
            try:
                answer = await self.behaviour(self, call) if self.behaviour is not None else None
                return answer if answer is not None else self.honest(call)
            except Exception:
                self.errors.append(traceback.format_exc())
                return web.Response(status=500, text="hostile server bug")

        return handle

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` before answering, or until the server stops (whichever comes first)."""
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def count(
        self,
        action: str | None = None,
        *,
        region: str | None = None,
        service: str | None = None,
        on_thief: bool = False,
    ) -> int:
        """Requests received, narrowed by action, region and service."""
        with self._lock:
            counts = list(self._counts.items())
        return sum(
            n
            for (call_region, call_action, call_service), n in counts
            if (action is None or call_action == action)
            and (region is None or call_region == region)
            and (service is None or call_service == service)
            and (call_region == "") == on_thief
        )

    def service(self, region: str, name: str) -> FleetService:
        for service in self.fleet[region]:
            if service.name == name:
                return service
        raise KeyError((region, name))

    # --- honest answers, and pages for behaviours to shape ---------------------------------------

    def honest(self, call: Call) -> web.StreamResponse:
        """What the real API answers (a 404 ``InvalidService.NotFound`` for an unknown service)."""
        if call.action == "ListServices":
            services = [s.service for s in self.fleet[call.region]]
            start = (call.number - 1) * call.size
            return self.services_page(call, services[start : start + call.size], total=len(services))
        if call.action == "ListServiceInstances":
            assert call.service is not None
            try:
                instances = self.service(call.region, call.service).instances
            except KeyError:
                return error_response(404, "InvalidService.NotFound", f"service {call.service} not found")
            start = (call.number - 1) * call.size
            return self.instances_page(call, instances[start : start + call.size], total=len(instances))
        return error_response(
            404, "InvalidAction.NotFound", "Specified api is not found, please check your url."
        )

    def services_page(
        self, call: Call, services: list[dict[str, Any]], *, total: Any, **overrides: Any
    ) -> web.Response:
        body = {
            "RequestId": f"REQ-{call.nth}",
            "TotalCount": total,
            "PageNumber": call.number,
            "PageSize": call.size,
            "Services": services,
            **overrides,
        }
        return json_response(body)

    def instances_page(
        self,
        call: Call,
        instances: Any,
        *,
        total: Any,
        content_type: str = "application/json;charset=utf-8",
        **overrides: Any,
    ) -> web.Response:
        """A ListServiceInstances page; remembers which instances it handed out."""
        body = {
            "RequestId": f"REQ-{call.nth}",
            "TotalCount": total,
            "PageNumber": call.number,
            "PageSize": call.size,
            "Instances": instances,
            **overrides,
        }
        if isinstance(body["Instances"], list) and call.service is not None:
            names = {
                i["InstanceName"] for i in body["Instances"] if isinstance(i, dict) and "InstanceName" in i
            }
            key = (call.region, call.service)
            if (call.page_size or MAX_PAGE_SIZE) > 1:
                with self._lock:
                    self.served.setdefault(key, set()).update(names)
        return json_response(body, content_type=content_type)


def _can_bind(host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True
