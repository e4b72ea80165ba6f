"""The embedded PAI-EAS simulator: a real aiohttp.web server on loopback speaking the EAS API.

It shares only ``scanner.eas``, ``scanner.errors``, ``scanner.clock`` and ``scanner.lifecycle``
with the rest of the package, so a client bug cannot hide behind a matching simulator bug (the
official SDK is what the tests drive it with). ``Simulator`` runs it in-process;
``python -m scanner.simulator`` (see ``scanner.simulator.standalone``) runs it as a process.

``Simulator(preset="org-small")`` (``org-large``, or ``org=OrgSpec(...)``) simulates a Resource
Directory instead (``scanner.simulator.org``): STS and ResourceManager on their own ports, and
every member account's own fleet behind the same regional endpoints, chosen by the credentials.
"""

from scanner.simulator.auth import AccessKey
from scanner.simulator.churn import ChurnRates
from scanner.simulator.counters import CountersSnapshot
from scanner.simulator.digest import Digest, account_key_digests, record_content_digest, record_key_digest
from scanner.simulator.faults import FaultConfig, FaultKind
from scanner.simulator.fleet import Fleet, InstanceKey
from scanner.simulator.org import ORG_PRESETS, OrgSpec
from scanner.simulator.server import DEFAULT_PAGE_CACHE_BYTES, Simulator
from scanner.simulator.spec import PRESETS, Even, FleetSpec, LongTail

__all__ = [
    "DEFAULT_PAGE_CACHE_BYTES",
    "ORG_PRESETS",
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
    "OrgSpec",
    "Simulator",
    "account_key_digests",
    "record_content_digest",
    "record_key_digest",
]
