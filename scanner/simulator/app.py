"""The HTTP side of the simulator: one aiohttp low-level handler for every region's port.

Per request, in this order (the order the real API checks things, as far as it shows):

1. ``/_simulator/...``: the admin routes (``scanner.simulator.admin``), not counted, not signed.
2. Route by method and path (the region is the port the request came in on); unknown: 404
   ``InvalidAction.NotFound``.
3. Authenticate (ACS3 or legacy signature, known key, STS token, fresh nonce and date), then
   ``x-acs-action`` must name the operation of the path.
4. A region switched to Forbidden: 403 ``Forbidden.RAM``.
5. The rate limit of (region, action): 429 ``Throttling`` or 400 ``Throttling.User``.
6. Latency, then the seeded fault draw: 500/503, or a body broken after rendering.
7. Churn is brought up to now, and the answer rendered (from the page cache when possible).

We use ``aiohttp.web.Server`` rather than an ``Application``: there are three routes, and skipping
the router and middleware chain is a measurable share of a ~100 µs request.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
from aiohttp import web

from scanner.clock import Clock
from scanner.eas import faults as eas_faults
from scanner.eas.params import Action, ApiPath, parse_path
from scanner.errors import ConfigError
from scanner.simulator.auth import Authenticator, AuthFailure
from scanner.simulator.counters import Counters
from scanner.simulator.derive import mix64
from scanner.simulator.faults import FaultDecision, FaultInjector, FaultKind
from scanner.simulator.pages import Pages, ServiceNotFound, with_request_id
from scanner.simulator.throttle import ServerThrottle

__all__ = ["ADMIN_PREFIX", "JSON_CONTENT_TYPE", "EasHandler", "RequestIds"]

JSON_CONTENT_TYPE: Final = "application/json;charset=utf-8"
ADMIN_PREFIX: Final = "/_simulator/"
_NOT_JSON_BODY: Final = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


class RequestIds:
    """Request ids shaped like the API's (``8-4-4-4-12`` upper-case hex), unique and seeded."""

    __slots__ = ("_n", "_prefix")

    def __init__(self, seed: int) -> None:
        h = mix64(seed ^ 0x12E9)
        text = f"{h:016X}"
        self._prefix = f"{text[:8]}-{text[8:12]}-{text[12:16]}-{(h >> 3) % 0xFFFF:04X}-"
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:012X}"


class _Failure(Exception):
    """Answer with an API error."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    @classmethod
    def of(cls, spec: eas_faults.ErrorSpec, message: str | None = None) -> _Failure:
        return cls(spec.status, spec.code, message or spec.message)


def _route(method: str, path: str, parsed: ApiPath | None) -> ApiPath:
    if parsed is None or method != "GET":
        raise _Failure.of(eas_faults.ROUTE_NOT_FOUND, f"No API matches {method} {path}.")
    return parsed


class EasHandler:
    """The request handler for ``aiohttp.web.Server``; everything it needs is passed in."""

    def __init__(
        self,
        *,
        pages: Pages,
        auth: Authenticator,
        faults: FaultInjector,
        limiter: ServerThrottle,
        counters: Counters,
        clock: Clock,
        advance: Callable[[], object],
        port_regions: dict[int, str],
        forbidden: set[str],
        request_ids: RequestIds,
        admin: Callable[[web.BaseRequest, str, str], Awaitable[web.StreamResponse]],
    ) -> None:
        self._pages = pages
        self._auth = auth
        self._faults = faults
        self._limiter = limiter
        self._counters = counters
        self._clock = clock
        self._advance = advance
        self._port_regions = port_regions
        self._forbidden = forbidden
        self._request_ids = request_ids
        self._admin = admin
        self._default_region = next(iter(port_regions.values()), "")

    def _region_of(self, request: web.BaseRequest) -> str:
        transport = request.transport
        if transport is not None:
            sockname = transport.get_extra_info("sockname")
            if sockname is not None:
                region = self._port_regions.get(sockname[1])
                if region is not None:
                    return region
        return self._default_region

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        path, _, raw_query = request.raw_path.partition("?")
        if path.startswith(ADMIN_PREFIX):
            return await self._admin(request, path, raw_query)
        region = self._region_of(request)
        parsed = parse_path(path)
        action = parsed.action.value if parsed is not None else "Unknown"
        counters = self._counters
        counters.begin(region, action)
        try:
            return await self._serve(request, region, action, path, parsed, raw_query)
        finally:
            counters.end(region)

    async def _serve(
        self,
        request: web.BaseRequest,
        region: str,
        action: str,
        path: str,
        parsed: ApiPath | None,
        raw_query: str,
    ) -> web.StreamResponse:
        request_id = self._request_ids.next()
        try:
            route = _route(request.method, path, parsed)
            # The API's GETs carry no body; skip the payload reader for them (most requests).
            body = await request.read() if request.body_exists else b""
            try:
                verified = self._auth.authenticate(
                    method=request.method,
                    raw_path=path,
                    raw_query=raw_query,
                    headers=request.headers.items(),
                    body=body,
                )
            except AuthFailure as failure:
                # The Date of the clock the signature was judged by (not aiohttp's real-time
                # one), as a real API's would be: the client names a skew from it.
                date = {"Date": self._auth.http_date()}
                raise _Failure(failure.status, failure.code, failure.message, date) from None
            if verified.action != route.action:
                wanted = f"{request.method} {path} ({route.action})"
                raise _Failure.of(
                    eas_faults.ROUTE_NOT_FOUND, f"x-acs-action {verified.action!r} does not match {wanted}."
                )
            if region in self._forbidden:
                self._counters.fault(FaultKind.FORBIDDEN)
                raise _Failure.of(eas_faults.FORBIDDEN_RAM)
            self._throttle(region, action)
            decision = self._faults.decide(region, action)
            if decision.slow:
                self._counters.fault(FaultKind.SLOW)
            if decision.delay:
                await self._clock.sleep(decision.delay)
            if decision.kind is FaultKind.INTERNAL_ERROR:
                self._counters.fault(decision.kind)
                raise _Failure.of(eas_faults.INTERNAL_ERROR)
            if decision.kind is FaultKind.SERVICE_UNAVAILABLE:
                self._counters.fault(decision.kind)
                raise _Failure.of(eas_faults.SERVICE_UNAVAILABLE)
            self._advance()
            payload = self._answer(route, region, raw_query)
        except _Failure as failure:
            error = orjson.dumps(eas_faults.error_body(failure.code, failure.message, request_id))
            return self._respond(region, failure.status, failure.code, error, request_id, failure.headers)
        response_body = with_request_id(payload, request_id)
        if decision.kind is None:
            return self._respond(region, 200, None, response_body, request_id)
        return await self._break(request, region, response_body, request_id, decision)

    def _throttle(self, region: str, action: str) -> None:
        wait = self._limiter.take((region, action))
        if not wait:
            return
        self._counters.throttle(region, action)
        self._counters.fault(FaultKind.THROTTLED)
        config = self._faults.config
        spec = eas_faults.THROTTLING if config.throttle_status == 429 else eas_faults.THROTTLING_USER
        failure = _Failure.of(spec)
        if config.retry_after_ms == "auto":
            failure.headers = {"x-acs-retry-after": str(max(1, round(wait * 1000)))}
        elif config.retry_after_ms is not None:
            failure.headers = {"x-acs-retry-after": str(config.retry_after_ms)}
        raise failure

    def _answer(self, route: ApiPath, region: str, raw_query: str) -> bytes:
        action, cluster_id, service_name = route.action, route.cluster_id, route.service_name
        try:
            if action is Action.LIST_SERVICE_INSTANCES:
                return self._pages.instances(region, cluster_id, service_name, raw_query)
            if action is Action.LIST_SERVICES:
                return self._pages.services(region, raw_query)
            return self._pages.regions()
        except ConfigError as exc:
            raise _Failure.of(eas_faults.INVALID_PARAMETER, str(exc)) from None
        except ServiceNotFound as exc:
            raise _Failure.of(eas_faults.SERVICE_NOT_FOUND, str(exc)) from None

    def _respond(
        self,
        region: str,
        status: int,
        code: str | None,
        body: bytes,
        request_id: str,
        extra_headers: dict[str, str] | None = None,
    ) -> web.Response:
        headers = {"Content-Type": JSON_CONTENT_TYPE, "x-acs-request-id": request_id}
        if extra_headers:
            headers.update(extra_headers)
        self._counters.sent(region, status, code, len(body))
        return web.Response(status=status, body=body, headers=headers)

    async def _break(
        self, request: web.BaseRequest, region: str, body: bytes, request_id: str, decision: FaultDecision
    ) -> web.StreamResponse:
        """Send a broken 200: cut short, not JSON, or reset after part of the body."""
        kind = decision.kind
        assert kind is not None
        self._counters.fault(kind)
        cut = min(len(body) - 1, max(1, int(len(body) * decision.cut)))
        if kind is FaultKind.TRUNCATED:
            return self._respond(region, 200, None, body[:cut], request_id)
        if kind is FaultKind.NOT_JSON:
            self._counters.sent(region, 200, None, len(_NOT_JSON_BODY))
            return web.Response(
                status=200,
                body=_NOT_JSON_BODY,
                headers={"Content-Type": "text/html;charset=utf-8", "x-acs-request-id": request_id},
            )
        # RESET: promise the whole body, send part of it, then reset the connection (RST, not FIN).
        response = web.StreamResponse(
            status=200, headers={"Content-Type": JSON_CONTENT_TYPE, "x-acs-request-id": request_id}
        )
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:cut])
        self._counters.sent(region, None, None, cut)
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        return response
