"""``EasClient``: one signed call to the EAS API and its decoded answer.

Each method is one HTTP request: no retries, no pagination (the engine owns both). What the
client does own is getting the request exactly right (parameters validated before anything is
sent, the bytes on the wire equal to the bytes signed) and turning every answer into either a
``Page`` or a ``RequestError`` that says where it happened (region, action, service) and what
the server said (status, code, message, request id).

Signing runs once per request, so whatever does not change between requests is computed once:
the signer per (endpoint, action, credentials), the encoded query per query object, the path
per service. ``benchmarks/signing.py`` measures the result.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar

import orjson

from scanner.client.credentials import Credentials, CredentialsProvider
from scanner.client.http import AsyncTransport, Request, Response
from scanner.client.redact import Redactor
from scanner.client.signer import RequestSigner
from scanner.client.transport import AiohttpTransport, ConnectionLimits, Timeouts, default_user_agent
from scanner.clock import Clock, SystemClock
from scanner.eas import faults
from scanner.eas.endpoints import Endpoint, EndpointResolver, validate_region
from scanner.eas.models import Page, Region
from scanner.eas.params import (
    Action,
    InstanceQuery,
    Paging,
    ServiceQuery,
    regions_path,
    service_instances_path,
    services_path,
)
from scanner.eas.signing import canonical_query, format_date
from scanner.errors import ApiError, ClockSkewError, ConfigError, DecodeError, RequestError
from scanner.lifecycle import Lifecycle

__all__ = [
    "EasClient",
    "clock_skew_message",
    "first_str",
    "non_json_message",
    "random_nonce",
    "redirect_message",
    "response_error",
    "standard_retry_after_ms",
]

_Query = TypeVar("_Query", InstanceQuery, ServiceQuery)
_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Caches keyed by caller-supplied values are cleared when they reach this size: a few times the
#: listings a scan keeps open at once, which is all the instance-path cache needs; more only grows
#: memory with the fleet.
_CACHE_LIMIT: Final = 1024


def random_nonce() -> str:
    """32 random hex digits, like ``uuid4().hex`` but a few times cheaper."""
    return os.urandom(16).hex()


class EasClient:
    """Signed calls to the PAI-EAS API (2021-07-01) over one connection pool.

    ::

        async with EasClient(credentials=DefaultCredentials()) as client:
            page = await client.list_service_instances("cn-shanghai", "my-svc", instance_status="Running")

    ``**filters`` are the field names of ``InstanceQuery`` / ``ServiceQuery`` and are validated
    by building one (``ConfigError`` before anything is sent). Given both a ``query`` and
    filters, the filters override the query's fields of the same name.
    """

    def __init__(
        self,
        *,
        credentials: CredentialsProvider,
        endpoints: EndpointResolver | None = None,
        timeouts: Timeouts | None = None,
        connection_limits: ConnectionLimits | None = None,
        transport: AsyncTransport | None = None,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
        user_agent: str | None = None,
    ) -> None:
        if user_agent is not None and (not isinstance(user_agent, str) or not user_agent.strip()):
            raise ConfigError("user_agent must be a non-empty string")
        self._credentials = credentials
        self._endpoints = endpoints or EndpointResolver()
        self._clock: Clock = clock or SystemClock()
        self._nonce = nonce_factory or random_nonce
        self.user_agent = user_agent or default_user_agent()
        if transport is None:
            transport = AiohttpTransport(timeouts=timeouts, limits=connection_limits)
        elif timeouts is not None or connection_limits is not None:
            raise ConfigError(
                "give a transport or timeouts/connection_limits, not both (configure the transport itself)"
            )
        self._transport: AsyncTransport = transport
        self._lifecycle = Lifecycle("client")
        self._signers: dict[tuple[str, str, str], RequestSigner] = {}
        self._instance_paths: dict[tuple[str, str], str] = {}
        self._query_parts: dict[int, tuple[object, str, str]] = {}
        self._redactor: tuple[Credentials | None, Redactor] = (None, Redactor())

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._lifecycle.check_openable()
        await self._transport.__aenter__()
        self._lifecycle.opened()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lifecycle.closed()
        await self._transport.aclose()

    def _check_open(self) -> None:
        if not self._lifecycle.is_open:
            self._lifecycle.require_open("use `async with EasClient(...) as client`")

    # --- operations ----------------------------------------------------------------------------

    async def describe_regions(self, region: str = "cn-shanghai") -> list[Region]:
        """The regions EAS is offered in, asked of ``region``'s endpoint (``DescribeRegions``)."""
        action = Action.DESCRIBE_REGIONS.value
        raw, redact = await self._call(region, action, None, regions_path(), "")
        return self._decode(redact, _decode_regions, raw, region, action)

    async def list_services(
        self,
        region: str,
        query: ServiceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
        **filters: Any,
    ) -> Page:
        """One page of the services in ``region`` (``ListServices``); items are ``Services``."""
        built = _build_query(ServiceQuery, query, filters)
        _check_paging(page_number, page_size)
        action = Action.LIST_SERVICES.value
        query_string = self._query_string(built, page_number, page_size)
        raw, redact = await self._call(region, action, None, services_path(), query_string)
        return self._decode(
            redact, _decode_page, raw, "Services", page_number, page_size, region, action, None
        )

    async def list_service_instances(
        self,
        region: str,
        service: str,
        query: InstanceQuery | None = None,
        *,
        page_number: int = 1,
        page_size: int = 100,
        **filters: Any,
    ) -> Page:
        """One page of ``service``'s instances (``ListServiceInstances``); items are ``Instances``."""
        if not isinstance(service, str) or not service:
            raise ConfigError(f"service must be a non-empty service name, got {service!r}")
        built = _build_query(InstanceQuery, query, filters)
        _check_paging(page_number, page_size)
        action = Action.LIST_SERVICE_INSTANCES.value
        path = self._instances_path(region, service)
        query_string = self._query_string(built, page_number, page_size)
        raw, redact = await self._call(region, action, service, path, query_string)
        return self._decode(
            redact, _decode_page, raw, "Instances", page_number, page_size, region, action, service
        )

    # --- one request ---------------------------------------------------------------------------

    async def _call(
        self, region: str, action: str, service: str | None, path: str, query: str
    ) -> tuple[Response, Redactor]:
        """Send one signed GET; return the 2xx response (and its redactor), else raise its error.

        Whatever the server sent is redacted for the credentials this request used: the error's
        text before it is raised, and the body's secret bytes before anyone decodes it.
        """
        self._check_open()
        endpoint = self._endpoints.resolve(region)  # ConfigError for a bad region id
        credentials = await self._credentials.get_credentials()
        url, headers = self._prepare(endpoint, action, path, query, credentials)
        redact = self._redactor_for(credentials)
        try:
            raw = await self._transport.send(Request("GET", url, headers))
        except RequestError as exc:  # the transport's errors know nothing of the target
            exc.region, exc.action, exc.service = region, action, service
            _redact_error(exc, redact)
            raise
        if not 200 <= raw.status < 300:
            raise response_error(
                raw, redact, self._clock.wall(), action=action, region=region, service=service
            )
        body = redact.scrub(raw.body)
        if body is not raw.body:
            raw = dataclasses.replace(raw, body=body)
        return raw, redact

    def _redactor_for(self, credentials: Credentials) -> Redactor:
        held, redact = self._redactor
        if credentials is not held:
            redact = Redactor(
                secrets=(credentials.access_key_secret, credentials.security_token),
                key_ids=(credentials.access_key_id,),
            )
            self._redactor = (credentials, redact)
        return redact

    def _decode(self, redact: Redactor, decode: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return decode(*args, **kwargs)
        except _NotJson as exc:
            # What came instead (a WAF's challenge, a captive portal, a proxy's login page), as
            # an error answer's body is shown: an excerpt, tags collapsed, redacted.
            problem = f"{non_json_message(exc.raw, redact)} ({exc.reason})"
            error = _decode_error(problem, exc.raw, None, exc.region, exc.action, exc.service)
            _redact_error(error, redact)
            raise error from None
        except DecodeError as exc:
            _redact_error(exc, redact)
            raise
        except _ErrorIn2xx as exc:
            raise response_error(
                exc.raw,
                redact,
                self._clock.wall(),
                action=exc.action,
                region=exc.region,
                service=exc.service,
            ) from None

    def _prepare(
        self, endpoint: Endpoint, action: str, path: str, query: str, credentials: Credentials
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of one signed request: the hot path, kept lean."""
        # Keyed by the key id too: a client whose credentials change (a refresh, another account)
        # does not rebuild one signer over and over.
        key = (endpoint.base_url, action, credentials.access_key_id)
        signer = self._signers.get(key)
        if signer is None or (signer.credentials is not credentials and signer.credentials != credentials):
            signer = RequestSigner(
                host=endpoint.host, action=action, user_agent=self.user_agent, credentials=credentials
            )
            if len(self._signers) >= _CACHE_LIMIT:
                self._signers.clear()
            self._signers[key] = signer
        headers = signer.sign(path, query, format_date(self._clock.wall()), self._nonce())
        url = f"{endpoint.base_url}{path}?{query}" if query else f"{endpoint.base_url}{path}"
        return url, headers

    def _instances_path(self, region: str, service: str) -> str:
        key = (region, service)
        path = self._instance_paths.get(key)
        if path is None:
            if len(self._instance_paths) >= _CACHE_LIMIT:
                self._instance_paths.clear()
            path = self._instance_paths[key] = service_instances_path(region, service)
        return path

    def _query_string(
        self, query: InstanceQuery | ServiceQuery | None, page_number: int, page_size: int
    ) -> str:
        """The canonical (= wire) query: the query object's part is encoded once per object."""
        if query is None:
            before, after = "", ""
        else:
            # Keyed by identity (the object is kept alive in the value, so the id stays unique):
            # hashing a query dataclass costs more than the lookup saves.
            cached = self._query_parts.get(id(query))
            if cached is None or cached[0] is not query:
                if len(self._query_parts) >= _CACHE_LIMIT:
                    self._query_parts.clear()
                cached = (query, *_split_query(query.to_params()))
                self._query_parts[id(query)] = cached
            _, before, after = cached
        return f"{before}PageNumber={page_number}&PageSize={page_size}{after}"

    def __repr__(self) -> str:
        return f"EasClient(state={self._lifecycle.state.value}, endpoints={self._endpoints!r})"


def _check_paging(page_number: int, page_size: int) -> None:
    # The common case is checked without building a Paging (this runs once per request);
    # anything unusual goes through Paging for its validation and error message.
    if type(page_number) is not int or type(page_size) is not int or page_number < 1 or page_size < 1:
        Paging(page_number, page_size)


def _split_query(params: dict[str, str]) -> tuple[str, str]:
    """Canonical query text before and after the paging parameters, each with its ``&``.

    No API parameter name sorts between ``PageNumber`` and ``PageSize``, so the paging pair
    always sits together; ``tests/test_signer.py`` checks the result equals ``canonical_query``.
    Query objects are frozen and treated as immutable (their cached encoding is reused).
    """
    low = {k: v for k, v in params.items() if k < "PageNumber"}
    high = {k: v for k, v in params.items() if k > "PageSize"}
    if len(low) + len(high) != len(params):
        raise ConfigError(f"unexpected query parameter among {sorted(params)}")
    before = canonical_query(low) + "&" if low else ""
    after = "&" + canonical_query(high) if high else ""
    return before, after


def _build_query(cls: type[_Query], query: _Query | None, filters: dict[str, Any]) -> _Query | None:
    if query is not None and not isinstance(query, cls):
        raise ConfigError(f"query must be a {cls.__name__}, got {type(query).__name__}")
    if not filters:
        return query
    valid = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(filters) - valid)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} filter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    return dataclasses.replace(query if query is not None else cls(), **filters)


# --- decoding --------------------------------------------------------------------------------


def first_str(data: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
#: The length of the excerpt of a non-JSON body in an error message.
SNIPPET_CHARS: Final = 80
#: A clock further than this from the server's is named, even when the server's code is vague.
CLOCK_SKEW_LIMIT_S: Final = 300.0
_CLOCK_CODES: Final = ("InvalidTimeStamp", "SignatureDoesNotMatch")


def _snippet(body: bytes, redact: Redactor, limit: int = SNIPPET_CHARS) -> str:
    """A short, readable, redacted excerpt of a non-JSON body (an HTML error page, usually)."""
    text = redact.scrub(body)[: limit * 16].decode("utf-8", "replace")
    text = redact(_SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def non_json_message(raw: Response, redact: Redactor) -> str:
    media_type = (raw.content_type or "").partition(";")[0].strip()[:60]
    kind = f" ({redact(media_type)})" if media_type else ""
    return f'HTTP {raw.status} with a non-JSON body{kind}: "{_snippet(raw.body, redact)}"'


#: The longest ``Location`` shown in a redirect's error.
LOCATION_CHARS: Final = 200


def redirect_message(raw: Response, redact: Redactor) -> str:
    """What a 3xx means for a signed API call, where it pointed, and the fix."""
    location = _SPACE.sub(" ", redact(raw.headers.get("location", "")).strip())
    if len(location) > LOCATION_CHARS:
        location = location[: LOCATION_CHARS - 1] + "…"
    target = f" redirect to {location}" if location else " redirect (no Location)"
    return (
        f"HTTP {raw.status}{target}: not followed (it would send the signed request, credentials "
        "included, to another address); if the API has moved there, give that address as the "
        "region's endpoint (eas-scan: --endpoint REGION=URL)"
    )


def clock_skew_message(code: str | None, server_date: str | None, now: datetime) -> str | None:
    """What to tell the user when the server refused our timestamp; None when it is not that.

    ``InvalidTimeStamp.Expired`` always means the clock. A signature or other timestamp error
    means it only when the server's ``Date`` is more than ``CLOCK_SKEW_LIMIT_S`` from ours.
    """
    if code is None or not code.startswith(_CLOCK_CODES):
        return None
    expired = code == "InvalidTimeStamp.Expired"
    server = _parse_http_date(server_date)
    skew = (server - now).total_seconds() if server is not None else 0.0
    if abs(skew) > CLOCK_SKEW_LIMIT_S or (expired and abs(skew) >= 60):
        minutes = round(abs(skew) / 60)
        how_far = f"{minutes} minute{'s' if minutes != 1 else ''} {'behind' if skew > 0 else 'ahead of'}"
        return (
            f"the local clock is {how_far} the server's (server Date: {server_date}); "
            "set the system clock (e.g. enable NTP) and run again"
        )
    if expired:
        return "the server refused the request's timestamp: check that the local clock is right (NTP)"
    return None


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


#: How much of an XML error body is searched for its fields (a real one is a few hundred bytes).
_XML_ERROR_BYTES: Final = 64 * 1024
_XML_FIELD = re.compile(r"<(Code|Message|RequestId)>\s*(?:<!\[CDATA\[(.*?)\]\]>|([^<]*?))\s*</\1>", re.DOTALL)


def _xml_error(body: bytes) -> dict[str, str] | None:
    """``Code``, ``Message`` and ``RequestId`` of an error in XML, as Alibaba's gateways may send it
    (``<Error><RequestId>..</RequestId><Code>..</Code><Message>..</Message></Error>``, the shape
    the SDK reads for ``text/xml``); None when the body is not such a document or has no code.

    Read with a pattern, not an XML parser: three flat text fields are all we take, and a
    server's document must not cost more than a scan over its first 64 KiB.
    """
    head = _without_bom(body[:_XML_ERROR_BYTES]).lstrip()
    if not head.startswith((b"<?xml", b"<Error")):
        return None
    text = head.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for match in _XML_FIELD.finditer(text):
        name, cdata, plain = match.groups()
        value = html.unescape(cdata if cdata is not None else plain).strip()
        if value and name not in fields:
            fields[name] = _SPACE.sub(" ", value)
    return fields if "Code" in fields else None


#: The statuses HTTP gives a ``Retry-After`` on to say "come back later" (RFC 9110, 10.2.3).
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})


def standard_retry_after_ms(value: str | None, server_date: str | None, now: datetime) -> int | None:
    """HTTP's ``Retry-After`` in milliseconds: delay-seconds, or an HTTP date (counted from the
    server's ``Date`` when it sent one, so a skewed local clock does not matter); None when absent,
    unreadable or not in the future. Gateways and proxies use it where the API uses
    ``x-acs-retry-after``; the caller treats both alike (and the engine caps both at 60 s).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = int(value)
        return seconds * 1000 if seconds > 0 else None
    when = _parse_http_date(value)
    if when is None:
        return None
    reference = _parse_http_date(server_date) or now
    millis = math.ceil((when - reference).total_seconds() * 1000)
    return millis if millis > 0 else None


def response_error(
    raw: Response,
    redact: Redactor,
    now: datetime,
    *,
    action: str,
    region: str | None = None,
    service: str | None = None,
    extra_rules: Sequence[tuple[str, type[ApiError]]] = (),
) -> ApiError:
    """The error for a non-2xx response; tolerates lower-case keys, an XML error and a non-JSON body.

    Everything taken from the response is redacted before it goes into the error. A refused
    timestamp is a ``ClockSkewError``; otherwise the class comes from ``faults.classify``, with
    ``extra_rules`` (another product's codes, e.g. ``scanner.org.rpc.ORG_CODE_RULES``) tried first.
    """
    code = message = request_id = None
    body = redact.scrub(raw.body)
    try:
        data = orjson.loads(_without_bom(body))
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        data = _xml_error(body)
    if isinstance(data, dict):
        code = redact.optional(first_str(data, "Code", "code"))
        message = redact.optional(first_str(data, "Message", "message"))
        request_id = redact.optional(first_str(data, "RequestId", "requestId", "requestid"))
    elif raw.body.strip():
        message = non_json_message(raw, redact)
    if 300 <= raw.status < 400:
        message = redirect_message(raw, redact)
    request_id = request_id or redact.optional(raw.request_id)
    skew = clock_skew_message(code, raw.date, now)
    if skew is not None:
        return ClockSkewError(
            redact(skew),
            region=region,
            action=action,
            service=service,
            status=raw.status,
            code=code,
            request_id=request_id,
        )
    retry_after_ms = raw.retry_after_ms
    if retry_after_ms is None and raw.status in _RETRY_AFTER_STATUSES:
        retry_after_ms = standard_retry_after_ms(raw.headers.get("retry-after"), raw.date, now)
    return faults.api_error(
        status=raw.status,
        code=code,
        message=message,
        request_id=request_id,
        retry_after_ms=retry_after_ms,
        region=region,
        action=action,
        service=service,
        extra_rules=extra_rules,
    )


def _redact_error(exc: RequestError, redact: Redactor) -> None:
    """Redact the texts of an error raised below us (the transport, a decoder), in place."""
    exc.message = redact(exc.message)
    exc.args = (exc.message, *exc.args[1:])
    exc.code = redact.optional(exc.code)
    exc.request_id = redact.optional(exc.request_id)


def _decode_error(
    problem: str,
    raw: Response,
    data: dict[str, Any] | None,
    region: str,
    action: str,
    service: str | None,
) -> DecodeError:
    request_id = first_str(data, "RequestId") if data is not None else None
    return DecodeError(
        f"unexpected response: {problem}",
        region=region,
        action=action,
        service=service,
        status=raw.status,
        request_id=request_id or raw.request_id,
    )


_BOM: Final = b"\xef\xbb\xbf"


def _without_bom(body: bytes) -> bytes:
    """``body`` without a leading UTF-8 byte order mark, which some gateways put before JSON (and
    orjson, following RFC 8259, refuses)."""
    return body[3:] if body.startswith(_BOM) else body


#: ``Code`` values some APIs put in a successful answer: not errors.
_SUCCESS_CODES: Final = frozenset({"0", "200", "ok", "success"})


class _RawAnswer(Exception):
    """A 2xx answer that only ``EasClient._decode``, which holds the redactor, can describe."""

    def __init__(self, raw: Response, region: str, action: str, service: str | None) -> None:
        super().__init__()
        self.raw, self.region, self.action, self.service = raw, region, action, service


class _ErrorIn2xx(_RawAnswer):
    """A 2xx answer that is an API error body (``Code``, ``Message``) instead of the data asked for.

    Some gateways answer 200 whatever happened and say the error in the body; the SDK would read
    it as an empty page. ``EasClient._decode`` turns it into the error its code names.
    """


def _check_error_in_2xx(
    data: dict[str, Any], items_key: str, raw: Response, region: str, action: str, service: str | None
) -> None:
    """Raise ``_ErrorIn2xx`` when ``data`` (without ``items_key``) carries an error code."""
    code = first_str(data, "Code", "code")
    if code is not None and data.get(items_key) is None and code.lower() not in _SUCCESS_CODES:
        raise _ErrorIn2xx(raw, region, action, service)


class _NotJson(_RawAnswer):
    """A 2xx body that is not JSON (``reason``: the parser's); ``EasClient._decode`` makes it a
    ``DecodeError`` showing an excerpt of what it was."""

    def __init__(self, raw: Response, region: str, action: str, service: str | None, reason: str) -> None:
        super().__init__(raw, region, action, service)
        self.reason = reason


def _decode_object(raw: Response, region: str, action: str, service: str | None) -> dict[str, Any]:
    try:
        data = orjson.loads(_without_bom(raw.body))
    except orjson.JSONDecodeError as exc:
        raise _NotJson(raw, region, action, service, f"{exc}; {len(raw.body)} bytes") from None
    if type(data) is not dict:
        raise _decode_error("the body is not a JSON object", raw, None, region, action, service)
    return data


def _decode_regions(raw: Response, region: str, action: str) -> list[Region]:
    data = _decode_object(raw, region, action, None)
    regions = data.get("Regions")
    if type(regions) is not list:
        _check_error_in_2xx(data, "Regions", raw, region, action, None)
        raise _decode_error("Regions is missing or not a list", raw, data, region, action, None)
    result = []
    seen: set[str] = set()
    for entry in regions:
        region_id = entry.get("RegionId") if type(entry) is dict else None
        if type(region_id) is not str or not region_id:
            raise _decode_error("a Regions entry has no RegionId", raw, data, region, action, None)
        if region_id in seen:
            continue  # listed twice: scanned once (else every instance there would be written twice)
        try:
            validate_region(region_id)
        except ConfigError:
            # No endpoint can be made of it; refused here, by name, rather than deep in the scan.
            problem = f"a Regions entry has a RegionId that is not a region id: {region_id[:64]!r}"
            raise _decode_error(problem, raw, data, region, action, None) from None
        seen.add(region_id)
        name = entry.get("RegionName")
        result.append(Region(region_id=region_id, region_name=name if type(name) is str else ""))
    return result


_DICT_ONLY: Final = frozenset({dict})


def _key_list(data: dict[str, Any], limit: int = 8) -> str:
    """The first ``limit`` top-level keys of an answer (each cut to 40 characters), to show its shape."""
    keys = [key[:40] for key in list(data)[:limit]]
    more = f", ... ({len(data)} in all)" if len(data) > limit else ""
    return (", ".join(keys) or "none") + more


def _echoed_int(echoed: Any) -> Any:
    """A paging echo as a number: a server that echoes the query string's text (``"2"``) meant 2.
    Anything else is returned as it is (and refused by the caller if it is not an int)."""
    if type(echoed) is str and 0 < len(echoed) <= 9 and echoed.isascii() and echoed.isdigit():
        return int(echoed)
    return echoed


def _unset(echoed: object) -> bool:
    """Whether a paging echo says nothing: left out, null, or 0 (no page has number or size 0)."""
    return echoed is None or (type(echoed) is int and echoed == 0)


_ITEMS_KEYS: Final = frozenset({"Instances", "Services"})
#: The keys of a ListServices or ListServiceInstances answer, but its RequestId.
_PAGE_FIELDS: Final = frozenset({"TotalCount", "PageNumber", "PageSize", *_ITEMS_KEYS})
#: Every key of a ListServices or ListServiceInstances answer.
_PAGE_KEYS: Final = frozenset({"RequestId", *_PAGE_FIELDS})


def _decode_page(
    raw: Response,
    items_key: str,
    page_number: int,
    page_size: int,
    region: str,
    action: str,
    service: str | None,
) -> Page:
    data = _decode_object(raw, region, action, service)

    def fail(problem: str) -> DecodeError:
        return _decode_error(problem, raw, data, region, action, service)

    total = data.get("TotalCount")
    if total is None:
        _check_error_in_2xx(data, items_key, raw, region, action, service)
        if not data.get(items_key) and _PAGE_KEYS.issuperset(data) and not _PAGE_FIELDS.isdisjoint(data):
            # An empty listing from a server that leaves zero values out (Go's ``omitempty``:
            # no TotalCount, no items) or sends them as null. Only a body of a page's own keys
            # that shows at least one page field: with items, the count is needed; with other
            # keys, or a RequestId alone, this is some other answer.
            total = 0
    if type(total) is not int or total < 0:
        if total is None:
            raise fail(f"TotalCount is missing (the answer's keys: {_key_list(data)})")
        error = fail(f"TotalCount is missing or not a non-negative integer ({total!r})")
        error.code = "ImplausibleTotalCount"  # a count no listing can have (issue 11)
        raise error
    # The echo of the paging asked for. Left out, null or 0 (a server that never fills it in: no
    # page has number or size 0), it is what was asked.
    echoed: Any = data.get("PageNumber")
    page_number = page_number if _unset(echoed) else _echoed_int(echoed)
    echoed = data.get("PageSize")
    page_size = page_size if _unset(echoed) else _echoed_int(echoed)
    if type(page_number) is not int or type(page_size) is not int:
        raise fail(f"PageNumber/PageSize are not integers ({page_number!r}, {page_size!r})")
    items = data.get(items_key)
    if items is None:
        # The API leaves out an empty list; that is only plausible when the page is empty.
        if (page_number - 1) * page_size < total:
            raise fail(f"no {items_key} list, but TotalCount={total} puts items on page {page_number}")
        items = []
    elif type(items) is not list or not _DICT_ONLY.issuperset(map(type, items)):  # a loop in C
        raise fail(f"{items_key} is not a list of objects")
    request_id = data.get("RequestId")
    return Page(
        items=items,
        total_count=total,
        page_number=page_number,
        page_size=page_size,
        request_id=request_id if type(request_id) is str else (raw.request_id or ""),
        body_bytes=len(raw.body),
    )
