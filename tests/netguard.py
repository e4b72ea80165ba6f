"""Refuse, and record, every attempt to reach a non-loopback address from the test process.

Installed by ``conftest.py`` for the whole run. Tests that must prove nothing tried to leave (the
credential chain's ECS metadata service, STS) read ``ATTEMPTS``.
"""

from __future__ import annotations

import _socket  # the C base class that really defines connect/connect_ex (typeshed types them there)
import ipaddress
import socket
from typing import Any

ATTEMPTS: list[str] = []

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_local(host: object) -> bool:
    if host in (None, "", "localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address: Any) -> None:
    if isinstance(address, tuple) and address and not _is_local(address[0]):
        ATTEMPTS.append(str(address[0]))
        raise ConnectionRefusedError(f"tests may only reach loopback, not {address[0]}")


def _connect(self: _socket.socket, address: Any) -> None:
    _check(address)
    _real_connect(self, address)


def _connect_ex(self: _socket.socket, address: Any) -> int:
    _check(address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_local(host):
        ATTEMPTS.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"tests may only resolve loopback, not {host}")
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _getaddrinfo
