"""RPC-style APIs (STS, ResourceManager) on their own loopback port: ``POST /``, parameters in the query.

What the official SDKs send (captured against a loopback server, tea-openapi 0.4.6): ``POST /``
with every business parameter in the query string (lists flattened: ``Tag.1.Key=``), an empty
body, and the ACS3-HMAC-SHA256 headers: ``x-acs-action``, ``x-acs-version``, ``x-acs-date``,
``x-acs-signature-nonce``, ``x-acs-content-sha256``, plus ``x-acs-accesskey-id`` and
``x-acs-security-token`` with STS credentials. Per request, in this order:

1. ``/_simulator/...``: the admin routes, as on the EAS ports.
2. The path must be ``/`` and the method POST or GET: else 404 ``InvalidAction.NotFound``.
3. Authenticate (``scanner.simulator.auth``, the same keys and tokens as EAS).
4. ``x-acs-version`` must be the product's (400 ``InvalidVersion``), ``x-acs-action`` one of its
   actions (404 ``InvalidAction.NotFound``).
5. The action's handler: a JSON object, or an ``RpcError``.

A form-encoded body (``req_body_type='formData'`` with a body) is read as parameters too; the
query wins when both name one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson
from aiohttp import web

from scanner.simulator.auth import Authenticator, AuthFailure
from scanner.simulator.pages import parse_query

__all__ = ["RpcError", "RpcHandler", "RpcProduct", "RpcRequest"]

_JSON: Final = "application/json;charset=utf-8"
_ADMIN_PREFIX: Final = "/_simulator/"


class RpcError(Exception):
    """Answer with an API error: HTTP ``status``, ``code`` and ``message``."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """One authenticated RPC call: who sent it, and its parameters (decoded)."""

    action: str
    access_key_id: str
    params: Mapping[str, str]


Action = Callable[[RpcRequest], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RpcProduct:
    """An RPC product: its version, host (``HostId`` in errors) and actions."""

    name: str
    version: str
    host: str
    actions: Mapping[str, Action]


class RpcHandler:
    """The request handler of one product's port (for ``aiohttp.web.Server``)."""

    def __init__(
        self,
        product: RpcProduct,
        *,
        auth: Authenticator,
        request_id: Callable[[], str],
        admin: Callable[[web.BaseRequest, str, str], Awaitable[web.StreamResponse]] | None = None,
        latency: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._product = product
        # Seconds to wait before answering (read per request, so it can change at run time).
        self._latency = latency
        self._sleep = sleep
        self._auth = auth
        self._request_id = request_id
        self._admin = admin
        #: Requests received per action (unknown actions under their name), and errors per code.
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        path, _, raw_query = request.raw_path.partition("?")
        if path.startswith(_ADMIN_PREFIX) and self._admin is not None:
            return await self._admin(request, path, raw_query)
        request_id = self._request_id()
        if self._latency is not None and self._sleep is not None:
            delay = self._latency()
            if delay > 0:
                await self._sleep(delay)
        try:
            body = await request.read() if request.body_exists else b""
            result = self._serve(request, path, raw_query, body)
        except RpcError as error:
            self.errors[error.code] = self.errors.get(error.code, 0) + 1
            payload = {
                "RequestId": request_id,
                "HostId": self._product.host,
                "Code": error.code,
                "Message": error.message,
                "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}",
            }
            return self._respond(error.status, payload, request_id, error.headers)
        return self._respond(200, {"RequestId": request_id, **result}, request_id)

    def _serve(self, request: web.BaseRequest, path: str, raw_query: str, body: bytes) -> dict[str, Any]:
        product = self._product
        action_header = request.headers.get("x-acs-action", "")
        counted = action_header if action_header in product.actions else "Unknown"
        self.requests[counted] = self.requests.get(counted, 0) + 1
        if path != "/" or request.method not in ("POST", "GET"):
            raise RpcError(
                404,
                "InvalidAction.NotFound",
                f"Specified api is not found, please check your url and method ({request.method} {path}).",
            )
        try:
            verified = self._auth.authenticate(
                method=request.method,
                raw_path=path,
                raw_query=raw_query,
                headers=request.headers.items(),
                body=body,
            )
        except AuthFailure as failure:
            # The Date of the clock the signature was judged by, as EAS's answers (and a real
            # API's) carry it: the client names a clock skew from it.
            date = {"Date": self._auth.http_date()}
            raise RpcError(failure.status, failure.code, failure.message, date) from None
        version = request.headers.get("x-acs-version", "")
        if version != product.version:
            raise RpcError(
                400,
                "InvalidVersion",
                f"Specified parameter Version is not valid: {product.name} is version {product.version}.",
            )
        action = product.actions.get(verified.action or "")
        if action is None:
            raise RpcError(
                404,
                "InvalidAction.NotFound",
                f"Specified api is not found, please check your url and method ({verified.action}).",
            )
        params = _form(body, request.headers.get("Content-Type", "")) if body else {}
        params.update(parse_query(raw_query))
        return action(RpcRequest(verified.action or "", verified.access_key_id, params))

    def _respond(
        self, status: int, payload: dict[str, Any], request_id: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps(payload),
            headers={"Content-Type": _JSON, "x-acs-request-id": request_id, **(headers or {})},
        )


def _form(body: bytes, content_type: str) -> dict[str, str]:
    """Parameters of a form-encoded body (other bodies carry no parameters)."""
    if not content_type.lower().startswith("application/x-www-form-urlencoded"):
        return {}
    params: dict[str, str] = {}
    for pair in body.decode("utf-8", "replace").split("&"):
        if pair:
            key, _, value = pair.partition("=")
            params[unquote_plus(key)] = unquote_plus(value)
    return params
