"""The HTTP(S) proxy the environment names, resolved per endpoint as Go's ``net/http`` does.

Operators behind a corporate proxy set ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY``; the
official SDK (``Tea/core.py``, ``darabonba/core.py``) and Go's ``ProxyFromEnvironment``
(``golang.org/x/net/http/httpproxy``) honour them, and so do we. The rules are Go's:

- ``https://`` URLs go through ``HTTPS_PROXY``, ``http://`` URLs through ``HTTP_PROXY``; the
  upper-case name wins over the lower-case one when both are set and not empty (Go's
  ``getEnvAny``, and the official SDK's ``os.environ.get('HTTPS_PROXY') or ...https_proxy``).
- A proxy value without a scheme is ``http://`` (``proxy.corp:3128``); ``http://`` and
  ``https://`` proxies are supported, with ``USER:PASSWORD@`` for Basic proxy authentication.
- Loopback is never proxied (``localhost``, ``127.0.0.0/8``, ``::1``), whatever ``NO_PROXY`` says.
- ``NO_PROXY`` (or ``no_proxy``) is a comma list: ``*`` (nothing is proxied); an IP address or a
  CIDR block; a domain name, which matches itself and its subdomains (``example.com``); a
  leading ``.`` or ``*.`` matches the subdomains only (``.example.com``); any entry but ``*`` and
  a CIDR may end in ``:PORT`` to match that port only.

The environment is read once, when a transport is created (``ProxyResolver.from_environment``),
and each (scheme, host, port) is resolved once: the hot path is one dict lookup.

A proxy's credentials never appear in a message or a repr: ``Proxy`` shows ``scheme://host:port``
only, and a value that cannot be parsed is quoted with its ``USER:PASSWORD@`` replaced by ``***@``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from yarl import URL

from scanner.errors import ConfigError

__all__ = ["Proxy", "ProxyResolver", "redact_proxy_value"]

#: The variables read for each scheme, the first set (and not empty) wins.
PROXY_VARIABLES: Final = {"https": ("HTTPS_PROXY", "https_proxy"), "http": ("HTTP_PROXY", "http_proxy")}
NO_PROXY_VARIABLES: Final = ("NO_PROXY", "no_proxy")

#: (scheme, host, port) resolved at most this many times before the cache starts over: a scan
#: talks to a few dozen endpoints, so this bounds memory only against a pathological caller.
_CACHE_LIMIT: Final = 4096

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy: its URL without credentials, the variable that named it, and the value of the
    ``Proxy-Authorization`` header its credentials make (``Basic ...``; None without credentials).

    ``str(proxy)`` and ``repr(proxy)`` never show the credentials.
    """

    url: URL
    variable: str
    authorization: str | None = field(default=None, repr=False, compare=False)

    @property
    def address(self) -> str:
        """``scheme://host:port``, the port always shown (yarl leaves a default one out)."""
        host = self.url.raw_host or ""
        host = f"[{host}]" if ":" in host else host
        return f"{self.url.scheme}://{host}:{self.url.port}"

    def __str__(self) -> str:
        return f"{self.address} (from {self.variable})"

    def __repr__(self) -> str:
        credentials = ", with credentials" if self.authorization is not None else ""
        return f"Proxy({self.address}, from {self.variable}{credentials})"


def redact_proxy_value(value: str) -> str:
    """``value`` with the ``USER:PASSWORD@`` of its authority replaced by ``***@``."""
    start = value.find("//")
    start = 0 if start == -1 else start + 2
    ends = [i for i in (value.find(c, start) for c in "/?#") if i != -1]
    end = min(ends) if ends else len(value)
    at = value.rfind("@", start, end)
    if at == -1:
        return value
    return f"{value[:start]}***{value[at:]}"


def parse_proxy(value: str, variable: str) -> Proxy:
    """The proxy named by ``variable=value``, or ``ConfigError`` naming the variable and the fix."""
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"  # Go's parseProxy: "host:port" means an http proxy
    shown = redact_proxy_value(value.strip())
    fix = "set it to http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT), or unset it"
    try:
        url = URL(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}={shown!r} is not a proxy URL ({exc}); {fix}") from None
    if url.scheme not in ("http", "https"):
        raise ConfigError(
            f"{variable}={shown!r} names a {url.scheme}:// proxy; only http:// and https:// proxies "
            f"are supported: {fix}"
        )
    host = url.raw_host
    if not host or any(c.isspace() or c in "\\<>\"'" for c in host):
        raise ConfigError(f"{variable}={shown!r} names no proxy host; {fix}")
    authorization = None
    if url.user is not None or url.password is not None:
        # RFC 7617: user-id ":" password, UTF-8 (what Go's url.User and curl send).
        pair = f"{url.user or ''}:{url.password or ''}".encode()
        authorization = f"Basic {base64.b64encode(pair).decode('ascii')}"
    port = url.port  # the scheme's default (80, 443) when the value gives none
    bare = URL.build(scheme=url.scheme, host=host, port=port, encoded=True)
    return Proxy(bare, variable, authorization)


def _getenv_any(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    """(name, value) of the first of ``names`` set and not empty: Go's ``getEnvAny``."""
    for name in names:
        value = environ.get(name, "")
        if value.strip():
            return name, value
    return None


def _ip(host: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``v6`` or ``host`` -> (host, port or None)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""  # a bare IPv6 address, or no port
    return host, (int(port) if port.isdigit() else None)


class _Bypass:
    """The ``NO_PROXY`` list, parsed once (Go's ``config.init``): does a (host, port) bypass?"""

    __slots__ = ("_all", "_domains", "_ips", "_networks", "entries")

    def __init__(self, value: str) -> None:
        self._all = False
        self._networks: list[_IPNetwork] = []
        self._ips: list[tuple[_IPAddress, int | None]] = []
        self._domains: list[tuple[str, bool, int | None]] = []  # (".suffix", matches itself, port)
        self.entries = 0
        for raw in value.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            self.entries += 1
            if entry == "*":
                self._all = True
                continue
            if "/" in entry:
                # Go: "a best effort is made to parse the string and errors are ignored".
                with contextlib.suppress(ValueError):
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            host, port = _split_port(entry)
            ip = _ip(host)
            if ip is not None:
                self._ips.append((ip, port))
                continue
            if host.startswith("*."):
                host = host[1:]
            if not host.strip("."):
                continue
            if host.startswith("."):
                self._domains.append((host, False, port))
            else:
                self._domains.append((f".{host}", True, port))

    def __call__(self, host: str, port: int | None) -> bool:
        if self._all:
            return True
        ip = _ip(host)
        if ip is not None:
            if any(ip in network for network in self._networks if network.version == ip.version):
                return True
            return any(ip == other and (want is None or want == port) for other, want in self._ips)
        host = host.rstrip(".")
        for suffix, itself, want in self._domains:
            if (host.endswith(suffix) or (itself and host == suffix[1:])) and (want is None or want == port):
                return True
        return False


class ProxyResolver:
    """Which proxy, if any, a URL goes through; ``resolver(url)`` -> ``Proxy | None``.

    Build it with ``ProxyResolver.from_environment()`` (what ``AiohttpTransport`` does when it is
    created), or directly with explicit values. ``bool(resolver)`` is whether any proxy is set.
    """

    __slots__ = ("_bypass", "_cache", "_proxies")

    def __init__(self, *, https: Proxy | None = None, http: Proxy | None = None, no_proxy: str = "") -> None:
        self._proxies = {"https": https, "http": http}
        self._bypass = _Bypass(no_proxy)
        self._cache: dict[tuple[str, str | None, int | None], Proxy | None] = {}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxyResolver:
        """The proxies ``environ`` (default ``os.environ``) names; ``ConfigError`` if one is bad."""
        env = os.environ if environ is None else environ
        proxies: dict[str, Proxy | None] = {}
        for scheme, names in PROXY_VARIABLES.items():
            found = _getenv_any(env, names)
            proxies[scheme] = parse_proxy(found[1], found[0]) if found else None
        no_proxy = _getenv_any(env, NO_PROXY_VARIABLES)
        return cls(https=proxies["https"], http=proxies["http"], no_proxy=no_proxy[1] if no_proxy else "")

    def __bool__(self) -> bool:
        return self._proxies["https"] is not None or self._proxies["http"] is not None

    def __call__(self, url: URL) -> Proxy | None:
        key = (url.scheme, url.raw_host, url.port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        proxy = self._resolve(*key)
        self._cache[key] = proxy
        return proxy

    def _resolve(self, scheme: str, host: str | None, port: int | None) -> Proxy | None:
        proxy = self._proxies.get(scheme)
        if proxy is None or not host:
            return None
        host = host.lower()
        if _is_loopback(host) or self._bypass(host, port):
            return None
        return proxy

    def __repr__(self) -> str:
        https, http = self._proxies["https"], self._proxies["http"]
        return f"ProxyResolver(https={https!r}, http={http!r}, no_proxy={self._bypass.entries} entries)"
