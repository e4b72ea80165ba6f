"""What to list: the filters ``scan()`` passes to the API, their allowed values, the page-size cap.

``InstanceQuery`` (ListServiceInstances) and ``ServiceQuery`` (ListServices) are validated when
built (a ``ConfigError`` names the bad field); their enum fields take these ``StrEnum`` values or
the same strings: ``ResourceType``, ``Role``, ``InstanceSort`` and ``Order`` for instances,
``ServiceStatus``, ``ServiceType`` and ``Order`` for services. ``MAX_PAGE_SIZE`` is the API's cap
on a page: what a scan asks for by default, and the most ``Consistency(page_size=...)`` accepts.

::

    from scanner.query import InstanceQuery, Role

    stream = s.scan(filters=InstanceQuery(role=Role.QUEUE, instance_status="Running"))

``InstanceQuery`` and ``ServiceQuery`` are also exported by ``scanner`` itself. The definitions
live in ``scanner.eas.params``, shared by the client and the simulator.
"""

from __future__ import annotations

from scanner.eas.params import (
    MAX_PAGE_SIZE,
    InstanceQuery,
    InstanceSort,
    Order,
    ResourceType,
    Role,
    ServiceQuery,
    ServiceStatus,
    ServiceType,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "InstanceQuery",
    "InstanceSort",
    "Order",
    "ResourceType",
    "Role",
    "ServiceQuery",
    "ServiceStatus",
    "ServiceType",
]
