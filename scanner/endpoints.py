"""Where each region's EAS API is reached: region ids, and the base URL a scan uses for each.

``Scanner(endpoints={region: url}, endpoint_type="public" | "vpc")`` takes overrides and the
default kind; this module lets a caller check them first, with the same rules and messages:
``validate_region`` accepts a well-formed region id (``cn-shanghai``) or raises ``ConfigError``;
``EndpointResolver(overrides, endpoint_type=...)`` refuses a bad override URL (plain ``http`` only
to loopback unless allowed) and ``.resolve(region)`` gives the ``Endpoint`` a request goes to;
``default_base_url`` is the URL of a region with no override.

The definitions live in ``scanner.eas.endpoints``; this module is where a user imports them from.
"""

from __future__ import annotations

from scanner.eas.endpoints import Endpoint, EndpointResolver, EndpointType, default_base_url, validate_region

__all__ = ["Endpoint", "EndpointResolver", "EndpointType", "default_base_url", "validate_region"]
