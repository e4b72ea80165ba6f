"""Loopback admin routes under ``/_simulator/``: not part of the EAS API, not signed, not counted.

They let a benchmark that runs the simulator as a subprocess read what an in-process test reads
from the ``Simulator`` object. Every region's port serves them.

==========================================  ============================================================
``GET  /_simulator/info``                   endpoints, access key id, regions, services, instances, now
``GET  /_simulator/counters``               ``CountersSnapshot.to_dict()``
``POST /_simulator/counters/reset``         zero the counters (the page cache is kept)
``GET  /_simulator/fleet-digest``           ``{"mode","count","digest"}`` of the current fleet's keys;
                                            ``?mode=throughout|at_any&t0=&t1=`` over an interval of
                                            simulator time; ``&content=1`` hashes whole instances
``GET  /_simulator/faults``                 the fault configuration (``FaultConfig.to_dict()``)
``PUT  /_simulator/faults``                 replace it (JSON object; missing keys take defaults)
``PATCH /_simulator/faults``                change only the given keys
``GET|PUT /_simulator/churn``               the churn rates (``ChurnRates`` fields)
``POST /_simulator/forbid``                 ``{"region": "...", "forbidden": true|false}``
``GET  /_simulator/now``                    ``{"now": <simulator seconds>}``
``GET  /_simulator/org``                    the organisation: accounts (status, knobs, AssumeRole calls,
                                            EAS requests), STS/ResourceManager request counts
``PATCH /_simulator/org``                   organisation knobs (``Simulator.set_org``)
``GET  /_simulator/org/digests``            ``{"accounts": {AccountId: {"count","digest"}}}``: each
                                            member's fleet (success statuses); ``?content=1``
``PATCH /_simulator/org/accounts/<id>``     change a member (``status``, ``role_exists``,
                                            ``eas_denied``, ``external_id``, ``rate_limit``)
``POST /_simulator/org/expire-tokens``      ``{"account": null|"<id>"}``: issued tokens expire now
==========================================  ============================================================

``fleet-digest`` takes ``&account=<AccountId>`` in an organisation: that member's fleet.

Digests follow ``scanner.simulator.digest``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

import orjson
from aiohttp import web

from scanner.errors import ConfigError
from scanner.simulator.churn import ChurnRates
from scanner.simulator.counters import CountersSnapshot
from scanner.simulator.digest import Digest
from scanner.simulator.faults import FaultConfig
from scanner.simulator.pages import parse_query

__all__ = ["AdminRoutes", "DigestMode", "SimulatorControl"]

DigestMode = Literal["current", "throughout", "at_any"]


class SimulatorControl(Protocol):
    """What the admin routes need from the simulator."""

    def info(self) -> dict[str, Any]: ...
    def counters(self) -> CountersSnapshot: ...
    def reset_counters(self) -> None: ...
    def fleet_digest(
        self,
        mode: DigestMode = "current",
        t0: float | None = None,
        t1: float | None = None,
        *,
        content: bool = False,
        account: str | None = None,
    ) -> Digest: ...
    def org_info(self) -> dict[str, Any]: ...
    def org_digests(self, *, content: bool = False) -> dict[str, Digest]: ...
    def set_org(self, **changes: Any) -> dict[str, Any]: ...
    def set_member(self, account: str, **changes: Any) -> dict[str, Any]: ...
    def expire_tokens(self, account: str | None = None) -> int: ...
    @property
    def faults(self) -> FaultConfig: ...
    def set_faults(self, config: FaultConfig | None = None, /, **changes: Any) -> FaultConfig: ...
    @property
    def churn(self) -> ChurnRates: ...
    def set_churn(self, rates: ChurnRates) -> None: ...
    def forbid_region(self, region: str, forbidden: bool = True) -> None: ...
    def now(self) -> float: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _float_param(params: dict[str, str], name: str) -> float | None:
    if name not in params:
        return None
    try:
        return float(params[name])
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {params[name]!r}") from None


class AdminRoutes:
    """Serves ``/_simulator/*`` for a ``SimulatorControl``."""

    def __init__(self, control: SimulatorControl) -> None:
        self._control = control

    async def __call__(self, request: web.BaseRequest, path: str, raw_query: str) -> web.StreamResponse:
        try:
            return await self._dispatch(request, path.removeprefix("/_simulator/"), parse_query(raw_query))
        except (ConfigError, ValueError, TypeError, KeyError) as exc:
            return _json({"error": str(exc)}, status=400)

    async def _body(self, request: web.BaseRequest) -> dict[str, Any]:
        raw = await request.read()
        data = orjson.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise ConfigError("the request body must be a JSON object")
        return data

    async def _dispatch(
        self, request: web.BaseRequest, route: str, params: dict[str, str]
    ) -> web.StreamResponse:
        control = self._control
        method = request.method
        if route == "info" and method == "GET":
            return _json(control.info())
        if route == "now" and method == "GET":
            return _json({"now": control.now()})
        if route == "counters" and method == "GET":
            return _json(control.counters().to_dict())
        if route == "counters/reset" and method == "POST":
            control.reset_counters()
            return _json({"ok": True})
        if route == "fleet-digest" and method == "GET":
            mode = params.get("mode", "current")
            if mode not in ("current", "throughout", "at_any"):
                raise ConfigError(f"mode must be current, throughout or at_any, got {mode!r}")
            digest = control.fleet_digest(
                mode,  # type: ignore[arg-type]  # checked just above
                _float_param(params, "t0"),
                _float_param(params, "t1"),
                content=_flag(params, "content"),
                account=params.get("account") or None,
            )
            return _json({"mode": mode, **digest.to_dict()})
        if route.startswith("org"):
            return await self._org(request, route, params)
        if route == "faults":
            if method == "PUT":
                control.set_faults(FaultConfig.from_mapping(await self._body(request)))
            elif method == "PATCH":
                merged = {**control.faults.to_dict(), **(await self._body(request))}
                control.set_faults(FaultConfig.from_mapping(merged))
            elif method != "GET":
                return _json({"error": f"{method} not allowed"}, status=405)
            return _json(control.faults.to_dict())
        if route == "churn":
            if method == "PUT":
                control.set_churn(ChurnRates(**(await self._body(request))))
            elif method != "GET":
                return _json({"error": f"{method} not allowed"}, status=405)
            return _json(dataclasses.asdict(control.churn))
        if route == "forbid" and method == "POST":
            body = await self._body(request)
            control.forbid_region(str(body["region"]), bool(body.get("forbidden", True)))
            return _json({"ok": True})
        return _json({"error": f"no admin route {method} /_simulator/{route}"}, status=404)

    async def _org(self, request: web.BaseRequest, route: str, params: dict[str, str]) -> web.StreamResponse:
        control = self._control
        method = request.method
        if route == "org" and method == "GET":
            return _json(control.org_info())
        if route == "org" and method == "PATCH":
            return _json(control.set_org(**(await self._body(request))))
        if route == "org/digests" and method == "GET":
            digests = control.org_digests(content=_flag(params, "content"))
            return _json({"accounts": {account: d.to_dict() for account, d in digests.items()}})
        if route.startswith("org/accounts/") and method == "PATCH":
            account = route.removeprefix("org/accounts/")
            return _json(control.set_member(account, **(await self._body(request))))
        if route == "org/expire-tokens" and method == "POST":
            which = (await self._body(request)).get("account")
            return _json({"expired": control.expire_tokens(None if which is None else str(which))})
        return _json({"error": f"no admin route {method} /_simulator/{route}"}, status=404)


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "0") not in ("0", "false", "")
