"""The embedded PAI-EAS simulator: a real aiohttp.web server on loopback speaking the EAS API.

It shares only ``scanner.eas``, ``scanner.errors``, ``scanner.clock`` and ``scanner.lifecycle``
with the rest of the package, so a client bug cannot hide behind a matching simulator bug (the
official SDK is what the tests drive it with). ``Simulator`` runs it in-process;
``python -m scanner.simulator`` (see ``scanner.simulator.standalone``) runs it as a process.
"""

from scanner.simulator.auth import AccessKey
from scanner.simulator.churn import ChurnRates
from scanner.simulator.counters import CountersSnapshot
from scanner.simulator.digest import Digest, record_content_digest, record_key_digest
from scanner.simulator.faults import FaultConfig, FaultKind
from scanner.simulator.fleet import Fleet, InstanceKey
from scanner.simulator.server import DEFAULT_PAGE_CACHE_BYTES, Simulator
from scanner.simulator.spec import PRESETS, Even, FleetSpec, LongTail

__all__ = [
    "DEFAULT_PAGE_CACHE_BYTES",
    "PRESETS",
    "AccessKey",
    "ChurnRates",
    "CountersSnapshot",
    "Digest",
    "Even",
    "FaultConfig",
    "FaultKind",
    "Fleet",
    "FleetSpec",
    "InstanceKey",
    "LongTail",
    "Simulator",
    "record_content_digest",
    "record_key_digest",
]
