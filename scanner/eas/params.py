"""The request parameters and response fields of the EAS operations we use (API 2021-07-01).

Shared by the client (which encodes and validates what it sends) and the simulator (which decodes
and validates what it receives), so both agree on names, types and allowed values. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final, cast
from urllib.parse import unquote

import orjson

from scanner.eas.signing import percent_encode
from scanner.errors import ConfigError
from scanner.validation import require_positive

__all__ = [
    "API_VERSION",
    "DEFAULT_PAGE_SIZE",
    "INSTANCE_FIELDS",
    "MAX_PAGE_SIZE",
    "REGIONS_PATH",
    "REGION_FIELDS",
    "SERVICES_PATH",
    "SERVICE_FIELDS",
    "SERVICE_LABEL_FIELDS",
    "Action",
    "ApiPath",
    "InstanceQuery",
    "InstanceSort",
    "Order",
    "Paging",
    "ResourceType",
    "Role",
    "ServiceQuery",
    "ServiceStatus",
    "ServiceType",
    "format_bool",
    "page_count",
    "parse_bool",
    "parse_paging",
    "parse_path",
    "regions_path",
    "service_instances_path",
    "services_path",
]

API_VERSION: Final = "2021-07-01"
DEFAULT_PAGE_SIZE: Final = 100
#: The server caps PageSize at this; a response reports the size it actually used.
MAX_PAGE_SIZE: Final = 100


class Action(StrEnum):
    DESCRIBE_REGIONS = "DescribeRegions"
    LIST_SERVICES = "ListServices"
    LIST_SERVICE_INSTANCES = "ListServiceInstances"


class ResourceType(StrEnum):
    PUBLIC = "PublicResource"
    DEDICATED = "DedicatedResource"


class Role(StrEnum):
    DATASET = "DataSet"
    SDPROXY = "SDProxy"
    STANDARD = "Standard"
    QUEUE = "Queue"


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


class InstanceSort(StrEnum):
    START_TIME = "StartTime"


class ServiceType(StrEnum):
    ASYNC = "Async"
    STANDARD = "Standard"
    OFFLINE_TASK = "OfflineTask"
    PROXIMA = "Proxima"


class ServiceStatus(StrEnum):
    CREATING = "Creating"
    STOPPED = "Stopped"
    FAILED = "Failed"
    COMPLETE = "Complete"
    CLONING = "Cloning"
    STOPPING = "Stopping"
    UPDATING = "Updating"
    WAITING = "Waiting"
    HOT_UPDATE = "HotUpdate"
    COMMITTING = "Committing"
    STARTING = "Starting"
    DELETE_FAILED = "DeleteFailed"
    RUNNING = "Running"
    DEVELOPING = "Developing"
    SCALING = "Scaling"
    DELETED = "Deleted"
    PENDING = "Pending"
    DELETING = "Deleting"


#: The 26 fields of an ``Instance`` in a ListServiceInstances response, as the SDK models them.
INSTANCE_FIELDS: Final[tuple[str, ...]] = (
    "CurrentAmount", "ExternalIP", "ExternalInstancePort", "HostIP", "HostName", "InnerIP",
    "InstanceName", "InstancePort", "InstanceType", "IsSpot", "Isolated", "LastState", "Namespace",
    "OriginalAmount", "ReadyProcesses", "Reason", "ResourceType", "RestartCount", "Role", "StartAt",
    "StartTime", "Status", "TenantHostIP", "TenantInstanceIP", "TotalProcesses", "Zone",
)  # fmt: skip

#: The 46 fields of a ``Service`` in a ListServices response.
SERVICE_FIELDS: Final[tuple[str, ...]] = (
    "AccessToken", "AppConfig", "AppSpecName", "AppType", "AppVersion", "CallerUid", "Cpu",
    "CreateTime", "CurrentVersion", "ExtraData", "Gateway", "Gpu", "Image", "InternetEndpoint",
    "IntranetEndpoint", "Labels", "LatestVersion", "Memory", "Message", "Namespace", "ParentUid",
    "PendingInstance", "QuotaId", "Reason", "Region", "RequestId", "Resource", "ResourceAlias",
    "Role", "RoleAttrs", "RunningInstance", "SafetyLock", "SecondaryInternetEndpoint",
    "SecondaryIntranetEndpoint", "ServiceConfig", "ServiceGroup", "ServiceId", "ServiceName",
    "ServiceUid", "Source", "Status", "TotalInstance", "TrafficState", "UpdateTime", "Weight",
    "WorkspaceId",
)  # fmt: skip

SERVICE_LABEL_FIELDS: Final[tuple[str, ...]] = ("LabelKey", "LabelValue")
REGION_FIELDS: Final[tuple[str, ...]] = ("RegionId", "RegionName")


# --- paths -----------------------------------------------------------------------------------

REGIONS_PATH: Final = "/api/v2/regions"
SERVICES_PATH: Final = "/api/v2/services"


def regions_path() -> str:
    return REGIONS_PATH


def services_path() -> str:
    return SERVICES_PATH


def service_instances_path(cluster_id: str, service_name: str) -> str:
    """``/api/v2/services/{ClusterId}/{ServiceName}/instances``, segments encoded like the SDK."""
    return f"{SERVICES_PATH}/{percent_encode(cluster_id)}/{percent_encode(service_name)}/instances"


@dataclass(frozen=True, slots=True)
class ApiPath:
    """The operation a request path is for; for ``ListServiceInstances``, its (decoded) segments."""

    action: Action
    cluster_id: str = ""
    service_name: str = ""


_REGIONS: Final = ApiPath(Action.DESCRIBE_REGIONS)
_SERVICES: Final = ApiPath(Action.LIST_SERVICES)


@lru_cache(maxsize=1024)  # a server sees the same few paths over and over
def parse_path(path: str) -> ApiPath | None:
    """What a still percent-encoded request path names (the inverse of the ``*_path`` builders).

    None when it names no operation we know.
    """
    if path == REGIONS_PATH:
        return _REGIONS
    if path == SERVICES_PATH:
        return _SERVICES
    parts = path.split("/")  # "", "api", "v2", "services", ClusterId, ServiceName, "instances"
    if len(parts) == 7 and parts[1:4] == ["api", "v2", "services"] and parts[6] == "instances":
        return ApiPath(Action.LIST_SERVICE_INSTANCES, unquote(parts[4]), unquote(parts[5]))
    return None


# --- value encoding --------------------------------------------------------------------------


def format_bool(value: bool) -> str:
    """Booleans as the API documents them. (The SDK sends Python's ``True``/``False``.)"""
    return "true" if value else "false"


def parse_bool(name: str, raw: str) -> bool:
    """Accept what our client sends (``true``/``false``) and what the SDK sends (``True``/``False``)."""
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _enum_value(name: str, value: object, enum: type[StrEnum]) -> str:
    if isinstance(value, enum):
        return value.value
    if isinstance(value, str):
        for member in enum:
            if member.value == value:
                return value
    allowed = ", ".join(member.value for member in enum)
    raise ConfigError(f"{name} must be one of {allowed}; got {value!r}")


def _positive_int(name: str, value: object) -> int:
    require_positive(name, value, integer=True)
    return cast(int, value)


def _parse_positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {raw!r}") from None
    return _positive_int(name, value)


# --- queries ---------------------------------------------------------------------------------

# For each query dataclass: python field -> (API name, enum or kind). Kinds other than enums:
# str, bool and "label" (a str->str mapping sent as one compact-JSON value).
_FieldKind = type[StrEnum] | type[str] | type[bool] | str


@dataclass(frozen=True, slots=True)
class _QueryBase:
    """Shared encode/decode for the query dataclasses below."""

    def __post_init__(self) -> None:
        for field_name, (api_name, kind) in self._fields_table().items():
            value = getattr(self, field_name)
            if value is None:
                continue
            object.__setattr__(self, field_name, _check_value(api_name, value, kind))

    @classmethod
    def _fields_table(cls) -> Mapping[str, tuple[str, _FieldKind]]:
        raise NotImplementedError

    def to_params(self) -> dict[str, str]:
        """The query parameters as sent on the wire (API names, string values), unset ones left out."""
        params: dict[str, str] = {}
        for field_name, (api_name, kind) in self._fields_table().items():
            value = getattr(self, field_name)
            if value is None:
                continue
            if kind is bool:
                params[api_name] = format_bool(value)
            elif kind == "label":
                params[api_name] = orjson.dumps(value).decode()
            else:
                params[api_name] = str(value)
        return params

    @classmethod
    def from_params(cls, raw: Mapping[str, str]) -> Any:
        """Decode wire parameters (as a server receives them). Unknown names are ignored."""
        values: dict[str, Any] = {}
        for field_name, (api_name, kind) in cls._fields_table().items():
            if api_name not in raw:
                continue
            text = raw[api_name]
            if kind is bool:
                values[field_name] = parse_bool(api_name, text)
            elif kind == "label":
                values[field_name] = _parse_label(api_name, text)
            else:
                values[field_name] = text
        return cls(**values)

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


def _check_value(api_name: str, value: object, kind: _FieldKind) -> object:
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{api_name} must be a boolean, got {value!r}")
        return value
    if kind == "label":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{api_name} must be a mapping of strings to strings, got {value!r}")
        return dict(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{api_name} must be a string, got {value!r}")
        return value
    assert isinstance(kind, type)
    assert issubclass(kind, StrEnum)
    return _enum_value(api_name, value, kind)


def _parse_label(api_name: str, text: str) -> dict[str, str]:
    try:
        decoded = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConfigError(f"{api_name} must be a JSON object of strings, got {text!r}") from None
    if not isinstance(decoded, dict) or not all(isinstance(v, str) for v in decoded.values()):
        raise ConfigError(f"{api_name} must be a JSON object of strings, got {text!r}")
    return decoded


@dataclass(frozen=True, slots=True)
class InstanceQuery(_QueryBase):
    """The filters and order of a ListServiceInstances request (everything but paging)."""

    filter: str | None = None
    resource_type: ResourceType | str | None = None
    instance_type: str | None = None
    instance_status: str | None = None
    instance_ip: str | None = None
    instance_name: str | None = None
    host_ip: str | None = None
    is_spot: bool | None = None
    role: Role | str | None = None
    sort: InstanceSort | str | None = None
    order: Order | str | None = None

    @classmethod
    def _fields_table(cls) -> Mapping[str, tuple[str, _FieldKind]]:
        return _INSTANCE_QUERY_FIELDS


_INSTANCE_QUERY_FIELDS: Final[Mapping[str, tuple[str, _FieldKind]]] = {
    "filter": ("Filter", str),
    "resource_type": ("ResourceType", ResourceType),
    "instance_type": ("InstanceType", str),
    "instance_status": ("InstanceStatus", str),
    "instance_ip": ("InstanceIP", str),
    "instance_name": ("InstanceName", str),
    "host_ip": ("HostIP", str),
    "is_spot": ("IsSpot", bool),
    "role": ("Role", Role),
    "sort": ("Sort", InstanceSort),
    "order": ("Order", Order),
}


@dataclass(frozen=True, slots=True)
class ServiceQuery(_QueryBase):
    """The filters and order of a ListServices request (everything but paging)."""

    filter: str | None = None
    gateway: str | None = None
    group_name: str | None = None
    label: Mapping[str, str] | None = None
    order: Order | str | None = None
    parent_service_uid: str | None = None
    quota_id: str | None = None
    resource_name: str | None = None
    resource_type: str | None = None
    role: str | None = None
    service_name: str | None = None
    service_status: ServiceStatus | str | None = None
    service_type: ServiceType | str | None = None
    service_uid: str | None = None
    sort: str | None = None
    workspace_id: str | None = None

    @classmethod
    def _fields_table(cls) -> Mapping[str, tuple[str, _FieldKind]]:
        return _SERVICE_QUERY_FIELDS

    def __hash__(self) -> int:  # label is a dict; hash its items instead
        return hash(tuple(sorted(self.to_params().items())))


_SERVICE_QUERY_FIELDS: Final[Mapping[str, tuple[str, _FieldKind]]] = {
    "filter": ("Filter", str),
    "gateway": ("Gateway", str),
    "group_name": ("GroupName", str),
    "label": ("Label", "label"),
    "order": ("Order", Order),
    "parent_service_uid": ("ParentServiceUid", str),
    "quota_id": ("QuotaId", str),
    "resource_name": ("ResourceName", str),
    "resource_type": ("ResourceType", str),
    "role": ("Role", str),
    "service_name": ("ServiceName", str),
    "service_status": ("ServiceStatus", ServiceStatus),
    "service_type": ("ServiceType", ServiceType),
    "service_uid": ("ServiceUid", str),
    "sort": ("Sort", str),
    "workspace_id": ("WorkspaceId", str),
}


@dataclass(frozen=True, slots=True)
class Paging:
    """``PageNumber`` and ``PageSize``: positive integers."""

    page_number: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    def __post_init__(self) -> None:
        _positive_int("PageNumber", self.page_number)
        _positive_int("PageSize", self.page_size)

    def to_params(self) -> dict[str, str]:
        return {"PageNumber": str(self.page_number), "PageSize": str(self.page_size)}


def page_count(total: int, page_size: int) -> int:
    """Pages of ``page_size`` that ``total`` items fill (at least 1: an empty listing has page 1)."""
    return max(1, -(-total // page_size))


def parse_paging(raw: Mapping[str, str]) -> Paging:
    """Decode PageNumber/PageSize as a server does (defaults 1 and 100; not yet capped)."""
    number = _parse_positive_int("PageNumber", raw["PageNumber"]) if "PageNumber" in raw else 1
    size = _parse_positive_int("PageSize", raw["PageSize"]) if "PageSize" in raw else DEFAULT_PAGE_SIZE
    return Paging(number, size)
