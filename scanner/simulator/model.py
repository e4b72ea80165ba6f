"""One simulated service and its instances, derived on demand from a 64-bit key.

A ``Service`` stores a few dozen integers and strings; its instances are never stored. Instance
``i`` is rebuilt from ``(service.key, i)`` whenever it is asked for, and only what churn changes
is remembered: instances started since (their start time and status), stopped ones (their index
and when), and restarts. That keeps a million-instance fleet to a few megabytes.

Ordering: instance ``i`` always starts strictly before instance ``i + 1`` (initial start times are
``first_start + i * step + jitter(i)`` with ``jitter < step``; churn starts at ``max(now,
last + 1s)``), so "by StartTime, ties by InstanceName" is simply index order and a page is a range
of live indexes, found by bisecting the sorted list of stopped ones.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections.abc import Iterable
from typing import Any, Final

import orjson

from scanner.eas.params import SERVICE_FIELDS, ResourceType, Role, ServiceType
from scanner.simulator.derive import (
    ANCHOR_EPOCH,
    DAY_PREFIX,
    DOT_PAIR,
    DOT_TAIL,
    GOLDEN,
    M64,
    OCTET,
    SECOND_OF_DAY,
    SUFFIX_ALPHABET,
    SUFFIX_PAIRS,
    SUFFIX_SPACE,
    iso,
    mix64,
    pick,
    pod_suffix,
    token,
)

__all__ = [
    "FAILED",
    "INSTANCE_STATUSES",
    "PENDING",
    "RUNNING",
    "TERMINATING",
    "RegionTraits",
    "Service",
    "initial_status",
    "new_service",
]

# Instance status codes (an int per instance is cheaper to keep than a string).
RUNNING: Final = 0
PENDING: Final = 1
FAILED: Final = 2
TERMINATING: Final = 3
INSTANCE_STATUSES: Final = ("Running", "Pending", "Failed", "Terminating")
_REASONS: Final = (
    ("RUNNING",),
    ("ContainerCreating", "Unschedulable", "PodInitializing"),
    ("CrashLoopBackOff", "Error", "OOMKilled"),
    ("Terminating",),
)
_LAST_STATE_REASONS: Final = ("OOMKilled", "Error", "Completed", "ContainerCannotRun")

# Service statuses, weighted: (status, percent, instance status mix run/pend/fail/term).
_SERVICE_STATUS_TABLE: Final = (
    ("Running", 78, (0.97, 0.02, 0.01, 0.0)),
    ("Stopped", 5, (0.0, 0.0, 0.0, 0.0)),
    ("Failed", 3, (0.2, 0.1, 0.7, 0.0)),
    ("Waiting", 3, (0.0, 1.0, 0.0, 0.0)),
    ("Updating", 4, (0.6, 0.3, 0.0, 0.1)),
    ("Scaling", 3, (0.7, 0.3, 0.0, 0.0)),
    ("Pending", 1, (0.0, 1.0, 0.0, 0.0)),
    ("HotUpdate", 1, (0.8, 0.1, 0.0, 0.1)),
    ("Starting", 1, (0.3, 0.7, 0.0, 0.0)),
    ("Stopping", 1, (0.1, 0.0, 0.0, 0.9)),
)
_STATUS_BY_PERCENT: Final = tuple(row for row in _SERVICE_STATUS_TABLE for _ in range(row[1]))
assert len(_STATUS_BY_PERCENT) == 100
_MIX_BY_STATUS: Final = {row[0]: row[2] for row in _SERVICE_STATUS_TABLE}
_MESSAGES: Final = {
    "Running": "Service is now running",
    "Stopped": "Service is stopped",
    "Failed": "Instance(s) failed to start: back-off restarting failed container",
    "Waiting": "Waiting for resources to be allocated",
    "Updating": "Service is being updated",
    "Scaling": "Service is scaling",
    "Pending": "Service is pending",
    "HotUpdate": "Service is being hot-updated",
    "Starting": "Service is starting",
    "Stopping": "Service is stopping",
    "Deleting": "Service is being deleted",
}

# (instance type, price per hour, cpu, memory MB, gpu)
_MACHINES: Final = (
    ("ecs.c7.large", 0.45, 2, 4000, 0),
    ("ecs.g7.xlarge", 1.12, 4, 16000, 0),
    ("ecs.c7.2xlarge", 1.8, 8, 16000, 0),
    ("ecs.g7.4xlarge", 4.48, 16, 64000, 0),
    ("ecs.gn6i-c4g1.xlarge", 9.3, 4, 15000, 1),
    ("ecs.gn7i-c8g1.2xlarge", 14.2, 8, 30000, 1),
    ("ecs.gn7i-c32g1.8xlarge", 24.0, 32, 188000, 1),
    ("ml.gu7i.c16m60.1-gu30", 13.8, 16, 60000, 1),
    ("ecs.gn6e-c12g1.12xlarge", 71.5, 48, 368000, 4),
)
# Weighted by repetition: half the services are Standard, five in eight have the Standard role.
_SERVICE_TYPES: Final[tuple[str, ...]] = tuple(
    t.value
    for t in (ServiceType.STANDARD,) * 3 + (ServiceType.ASYNC, ServiceType.OFFLINE_TASK, ServiceType.PROXIMA)
)
_SERVICE_ROLES: Final[tuple[str, ...]] = tuple(
    r.value for r in (Role.STANDARD,) * 5 + (Role.QUEUE, Role.DATASET, Role.SDPROXY)
)
_WORDS_A: Final = ("llm", "chat", "embed", "rank", "rec", "ocr", "asr", "tts", "cv", "sd", "search", "risk")
_WORDS_B: Final = (
    "qwen",
    "bert",
    "vit",
    "yolo",
    "whisper",
    "xl",
    "lite",
    "core",
    "pro",
    "v2",
    "online",
    "batch",
)
_ENVS: Final = ("prod", "prod", "staging", "dev", "test")
_TEAMS: Final = ("search", "ads", "recsys", "nlp", "cv", "speech", "risk")
_TIERS: Final = ("gold", "silver", "bronze")
_SOURCES: Final = ("PAI-EAS", "QuickStart", "DSW", "Designer", "ModelGallery")
_SAFETY: Final = ("none", "dangerous", "all")
_APPS: Final = (
    ("LLM", "llm-qwen2-7b", "v1.0.3"),
    ("SD-WebUI", "sd-webui-standard", "v4.2"),
    ("RAG", "rag-basic", "v0.9.1"),
)


class RegionTraits:
    """What services of one region share: its id, zones, resource groups, workspaces, gateways."""

    __slots__ = (
        "caller_uid",
        "gateways",
        "index",
        "key",
        "quotas",
        "region",
        "resource_groups",
        "workspaces",
        "zones",
    )

    def __init__(self, *, seed_key: int, region: str, index: int, caller_uid: str) -> None:
        self.region = region
        self.index = index
        self.caller_uid = caller_uid
        self.key = mix64(seed_key ^ mix64(index + 1))
        k = self.key
        self.zones = tuple(f"{region}-{letter}" for letter in "abcdefgh"[: 2 + k % 3])
        self.resource_groups = tuple(
            (f"eas-r-{token(k ^ (i + 11), 10)}", f"rg-{pick(_TEAMS, k >> i)}-{i}") for i in range(4)
        )
        self.workspaces = tuple(str(100000 + mix64(k ^ (i + 21)) % 900000) for i in range(3))
        self.gateways = tuple(f"gw-{token(k ^ (i + 31), 12)}" for i in range(2))
        self.quotas = tuple(f"quota{token(k ^ (i + 41), 12)}" for i in range(2))

    def service_key(self, index: int) -> int:
        return mix64(self.key ^ ((index + 1) * GOLDEN & M64))

    def service_uid(self, index: int) -> str:
        return token(self.service_key(index) ^ 0x5A5A, 16)


class Service:
    """A service: its static traits, the constants its instances derive from, and churn state."""

    __slots__ = (
        "_frags",
        "_static",
        "alt_instance_type",
        "alt_threshold",
        "create_epoch",
        "created_at",
        "deleted_at",
        "died_at",
        "extra_born",
        "extra_start",
        "extra_status",
        "first_start",
        "gateway",
        "group",
        "host_base",
        "hosts",
        "index",
        "initial_count",
        "instance_type",
        "ip_base",
        "key",
        "labels",
        "last_start",
        "name",
        "name_prefix",
        "parent_uid",
        "pending",
        "perm_a",
        "perm_b",
        "port",
        "price",
        "procs",
        "queue_share",
        "quota_id",
        "region",
        "removed",
        "resource",
        "resource_alias",
        "resource_type",
        "restarts",
        "role",
        "running",
        "service_id",
        "service_type",
        "service_uid",
        "spill",
        "spot_discount",
        "spot_threshold",
        "status",
        "step",
        "suffix_a",
        "suffix_b",
        "thresholds",
        "traits",
        "update_epoch",
        "version",
        "workspace_id",
    )

    # -- identity and filterable traits
    region: str
    traits: RegionTraits
    index: int
    key: int
    name: str
    status: str
    service_type: str
    role: str
    resource_type: str
    resource: str
    resource_alias: str
    group: str
    labels: tuple[tuple[str, str], ...]
    workspace_id: str
    quota_id: str
    gateway: str
    parent_uid: str
    service_uid: str
    service_id: str
    create_epoch: int
    update_epoch: int
    # -- instance derivation constants
    initial_count: int
    perm_a: int
    perm_b: int
    thresholds: tuple[int, int, int]
    first_start: int
    step: int
    name_prefix: str
    suffix_a: int
    suffix_b: int
    ip_base: int
    host_base: int
    hosts: int
    instance_type: str
    alt_instance_type: str
    alt_threshold: int
    spot_threshold: int
    spill: int
    queue_share: int
    price: float
    spot_discount: float
    procs: int
    port: int
    # -- lifecycle, in simulator seconds
    created_at: float
    deleted_at: float | None
    # -- churn state
    removed: list[int]
    died_at: dict[int, float]
    extra_born: list[float]
    extra_start: list[int]
    extra_status: list[int]
    restarts: dict[int, tuple[int, int]]
    last_start: int
    running: int
    pending: int
    version: int
    _static: dict[str, Any] | None
    _frags: _Fragments | None

    # --- listing ---------------------------------------------------------------------------------

    @property
    def next_index(self) -> int:
        return self.initial_count + len(self.extra_start)

    @property
    def live_count(self) -> int:
        return self.next_index - len(self.removed)

    @property
    def is_live(self) -> bool:
        return self.deleted_at is None

    def index_at(self, position: int) -> int:
        """The index of the ``position``-th live instance (0-based, in start order)."""
        removed = self.removed
        if not removed:
            return position
        # Fixed point of x = position + #removed<=x, approached from below: never a removed index.
        x = position
        while True:
            nx = position + bisect_right(removed, x)
            if nx == x:
                return x
            x = nx

    def live_indexes(self, start: int = 0, stop: int | None = None) -> list[int]:
        """Indexes of live instances at positions ``[start, stop)`` in start order."""
        live = self.live_count
        stop = live if stop is None else min(stop, live)
        if start >= stop:
            return []
        if not self.removed:
            return list(range(start, stop))
        died = self.died_at
        out: list[int] = []
        x = self.index_at(start)
        want = stop - start
        while len(out) < want:
            if x not in died:
                out.append(x)
            x += 1
        return out

    def is_alive(self, index: int) -> bool:
        return 0 <= index < self.next_index and index not in self.died_at

    # --- derivation -----------------------------------------------------------------------------

    def instance_hash(self, index: int) -> int:
        return mix64(self.key ^ ((index + 1) * GOLDEN & M64))

    def status_code(self, index: int) -> int:
        n = self.initial_count
        if index >= n:
            return self.extra_status[index - n]
        p = (self.perm_a * index + self.perm_b) % n
        t_run, t_pend, t_fail = self.thresholds
        if p < t_run:
            return RUNNING
        if p < t_pend:
            return PENDING
        if p < t_fail:
            return FAILED
        return TERMINATING

    def start_epoch(self, index: int) -> int:
        n = self.initial_count
        if index >= n:
            return self.extra_start[index - n]
        return self.first_start + index * self.step + (self.instance_hash(index) >> 40) % self.step

    def instance_name(self, index: int) -> str:
        return self.name_prefix + pod_suffix((self.suffix_a * index + self.suffix_b) % SUFFIX_SPACE)

    def render_instance(self, index: int) -> dict[str, Any]:
        """The ``Instance`` object of ListServiceInstances for instance ``index`` (all 26 fields)."""
        result: dict[str, Any] = orjson.loads(self.instances_json((index,)))[0]
        return result

    def _fragments(self) -> _Fragments:
        fragments = self._frags
        if fragments is None:
            fragments = self._frags = _Fragments(self)
        return fragments

    def instances_json(self, indexes: Iterable[int]) -> str:
        """The JSON array of the given instances, exactly as ListServiceInstances sends it.

        The hot path of the simulator. Each instance is a run of JSON text pieces, joined once
        per page; only the holes between pieces are computed per instance, and everything that
        depends on the service alone (or on a handful of per-instance flags) is pre-rendered in
        ``_Fragments``. Service constants are bound to locals once per page, not per instance.
        """
        f = self._fragments()
        key, n, hosts = self.key, self.initial_count, self.hosts
        perm_a, perm_b, first_start, step = self.perm_a, self.perm_b, self.first_start, self.step
        t_run, t_pend, t_fail = self.thresholds
        suffix_a, suffix_b, ip_base = self.suffix_a, self.suffix_b, self.ip_base
        spot_threshold, alt_threshold, queue_share, spill = (
            self.spot_threshold, self.alt_threshold, self.queue_share, self.spill
        )  # fmt: skip
        extra_status, extra_start, restarts_by_index = self.extra_status, self.extra_start, self.restarts
        name_open, status_parts, no_restarts, host_parts, flag_part = (
            f.name_open, f.status, f.no_restarts, f.host_parts, f.flag_part
        )  # fmt: skip
        days, seconds = DAY_PREFIX, SECOND_OF_DAY
        parts = ["["]
        add = parts.extend
        for index in indexes:
            x = (key ^ ((index + 1) * GOLDEN & M64)) + GOLDEN & M64
            x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & M64
            x = (x ^ (x >> 27)) * 0x94D049BB133111EB & M64
            h = x ^ (x >> 31)  # == self.instance_hash(index)
            bits = (h >> 22) & 63
            if index < n:
                p = (perm_a * index + perm_b) % n
                status = (
                    RUNNING if p < t_run else PENDING if p < t_pend else FAILED if p < t_fail else TERMINATING
                )
                start = first_start + index * step + (h >> 40) % step
                if status == FAILED:
                    restarts = 1 + bits % 30
                else:
                    restarts = 0 if bits < 52 else 1 if bits < 60 else 2 + bits % 4
            else:
                status = extra_status[index - n]
                start = extra_start[index - n]
                restarts = 0
            churned = restarts_by_index.get(index) if restarts_by_index else None
            if churned is None and not restarts:
                restart_part = no_restarts
            else:
                if churned is not None:
                    restarts += churned[0]
                    finished = churned[1]
                else:
                    finished = min(start + 60 + (h >> 40) % 86400, max(start + 1, ANCHOR_EPOCH - 1))
                restart_part = (
                    f'","RestartCount":{restarts},"LastState":[{{"exitCode":{137 if bits & 1 else 1},'
                    f'"finishedAt":"{iso(finished)}","reason":"{_LAST_STATE_REASONS[bits & 3]}",'
                    f'"startedAt":"{iso(max(start, finished - 30 - bits * 97))}"}}],"InnerIP":"10.'
                )
            day = start // 86400
            day_text = days.get(day)
            start_text = (day_text + seconds[start - day * 86400]) if day_text is not None else iso(start)
            host = (h >> 28) % hosts
            host_part = host_parts[host]
            if host_part is None:
                host_part = f.host_part(host)
            c = DOT_TAIL[index % 250 + 2]
            v = ip_base + index // 250
            options = status_parts[status]
            suffix = (suffix_a * index + suffix_b) % SUFFIX_SPACE
            rest = suffix % 531441  # the last four suffix characters, two pairs at a time
            add(
                (
                    name_open,
                    SUFFIX_ALPHABET[suffix // 531441],
                    SUFFIX_PAIRS[rest // 729],
                    SUFFIX_PAIRS[rest % 729],
                    options[(h >> 56) % len(options)],
                    start_text,
                    '","StartAt":"',
                    start_text,
                    restart_part,
                    DOT_PAIR[v & 0xFFFF],
                    c,
                    '","TenantInstanceIP":"172.',
                    OCTET[16 + (v >> 8) % 16],
                    DOT_TAIL[v & 255],
                    c,
                    host_part,
                    str(30000 + (index * 7 + host) % 2768),
                    flag_part(
                        ((h >> 4) & 127 < spot_threshold)
                        | ((h >> 18) & 15 < alt_threshold) << 1
                        | ((h >> 12) & 15 < queue_share) << 2
                        | ((h >> 52) & 15 < spill) << 3
                        | ((h >> 11) & 127 == 0) << 4
                    ),
                )
            )
        if len(parts) > 1:
            parts[1] = parts[1][1:]  # the first instance takes no leading comma
        parts.append("]")
        return "".join(parts)

    def render_service(self) -> dict[str, Any]:
        """The ``Service`` object of ListServices (all 46 fields), with current instance counts."""
        static = self._static
        if static is None:
            static = self._static = self._render_static()
        out = static.copy()
        out["TotalInstance"] = self.live_count
        out["RunningInstance"] = self.running
        out["PendingInstance"] = self.pending
        return out

    def _render_static(self) -> dict[str, Any]:
        k = self.key
        traits = self.traits
        region = traits.region
        machine = _MACHINES[self._machine_index()]
        is_app = (k >> 20) % 5 == 0
        app_type, app_spec, app_version = pick(_APPS, k >> 23) if is_app else ("", "", "")
        latest = 1 + (k >> 26) % 20
        image = (
            f"eas-registry-vpc.{region}.cr.aliyuncs.com/pai-eas/{pick(_WORDS_B, k >> 30)}:{latest}.{k % 10}"
        )
        metadata: dict[str, Any] = {
            "name": self.name,
            "instance": self.initial_count,
            "cpu": machine[2],
            "memory": machine[3],
            "gpu": machine[4],
            "type": self.service_type,
        }
        if self.resource:
            metadata["resource"] = self.resource
        if self.quota_id:
            metadata["quota_id"] = self.quota_id
        if self.workspace_id:
            metadata["workspace_id"] = self.workspace_id
        config = {
            "metadata": metadata,
            "containers": [{"image": image, "port": self.port}],
            "cloud": {"computing": {"instance_type": self.instance_type}},
        }
        base_url = f"http://{traits.caller_uid}.{region}.pai-eas.aliyuncs.com/api/predict/{self.name}"
        vpc_url = f"http://{traits.caller_uid}.vpc.{region}.pai-eas.aliyuncs.com/api/predict/{self.name}"
        gw_url = (
            f"http://{self.gateway}.{region}.pai-eas.aliyuncs.com/api/predict/{self.name}"
            if self.gateway
            else ""
        )
        gw_vpc = (
            f"http://{self.gateway}-vpc.{region}.pai-eas.aliyuncs.com/api/predict/{self.name}"
            if self.gateway
            else ""
        )
        values: dict[str, Any] = {
            "AccessToken": token(
                k ^ 0xACCE55, 40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            )
            + "==",
            "AppConfig": orjson.dumps({"replicas": self.initial_count, "spec": app_spec}).decode()
            if is_app
            else "",
            "AppSpecName": app_spec,
            "AppType": app_type,
            "AppVersion": app_version,
            "CallerUid": traits.caller_uid,
            "Cpu": machine[2],
            "CreateTime": iso(self.create_epoch),
            "CurrentVersion": latest - (k >> 31) % 2 if latest > 1 else latest,
            "ExtraData": orjson.dumps({"source_region": region}).decode(),
            "Gateway": self.gateway,
            "Gpu": machine[4],
            "Image": image,
            "InternetEndpoint": base_url,
            "IntranetEndpoint": vpc_url,
            "Labels": [{"LabelKey": key, "LabelValue": value} for key, value in self.labels],
            "LatestVersion": latest,
            "Memory": machine[3],
            "Message": _MESSAGES.get(self.status, "Service is " + self.status.lower()),
            "Namespace": self.name,
            "ParentUid": self.parent_uid,
            "PendingInstance": 0,
            "QuotaId": self.quota_id,
            "Reason": self.status.upper(),
            "Region": region,
            "RequestId": token(k ^ 0x4E51, 8, "0123456789ABCDEF")
            + "-"
            + token(k ^ 0x4E52, 4, "0123456789ABCDEF"),
            "Resource": self.resource,
            "ResourceAlias": self.resource_alias,
            "Role": self.role,
            "RoleAttrs": orjson.dumps({"queue_size": 1000}).decode() if self.role == Role.QUEUE else "",
            "RunningInstance": 0,
            "SafetyLock": pick(_SAFETY, k >> 34),
            "SecondaryInternetEndpoint": gw_url,
            "SecondaryIntranetEndpoint": gw_vpc,
            "ServiceConfig": orjson.dumps(config).decode(),
            "ServiceGroup": self.group,
            "ServiceId": self.service_id,
            "ServiceName": self.name,
            "ServiceUid": self.service_uid,
            "Source": pick(_SOURCES, k >> 37),
            "Status": self.status,
            "TotalInstance": 0,
            "TrafficState": "grouping" if self.group != self.name else "standalone",
            "UpdateTime": iso(self.update_epoch),
            "Weight": 100 if self.group == self.name else 10 * (1 + (k >> 40) % 10),
            "WorkspaceId": self.workspace_id,
        }
        return {name: values[name] for name in SERVICE_FIELDS}

    def _machine_index(self) -> int:
        return (self.key >> 8) % len(_MACHINES)

    def sort_value(self, field: str) -> Any:
        """The value ListServices sorts by, for a sortable field."""
        if field == "TotalInstance":
            return self.live_count
        if field == "RunningInstance":
            return self.running
        if field == "PendingInstance":
            return self.pending
        if field == "CreateTime":
            return self.create_epoch
        if field == "UpdateTime":
            return self.update_epoch
        return self.render_service()[field]

    # --- churn ------------------------------------------------------------------------------------

    def _count(self, status: int, delta: int) -> None:
        if status == RUNNING:
            self.running += delta
        elif status == PENDING:
            self.pending += delta

    def add_instance(self, born_at: float, wall_epoch: int, status: int) -> int:
        """Start a new instance; it starts strictly after every other instance of the service."""
        start = max(wall_epoch, ANCHOR_EPOCH, self.last_start + 1)
        self.last_start = start
        self.extra_born.append(born_at)
        self.extra_start.append(start)
        self.extra_status.append(status)
        self._count(status, +1)
        self.version += 1
        return self.next_index - 1

    def remove_instance(self, index: int, died_at: float) -> None:
        self.died_at[index] = died_at
        insort(self.removed, index)
        self._count(self.status_code(index), -1)
        self.version += 1

    def restart_instance(self, index: int, wall_epoch: int) -> None:
        count = self.restarts.get(index, (0, 0))[0]
        self.restarts[index] = (count + 1, max(wall_epoch, self.start_epoch(index) + 1))
        self.version += 1

    def born_at(self, index: int) -> float:
        n = self.initial_count
        return self.created_at if index < n else self.extra_born[index - n]


def _json_text(text: str) -> str:
    """``text`` escaped for use inside a JSON string (no surrounding quotes)."""
    return orjson.dumps(text).decode()[1:-1]


class _Fragments:
    """The pre-rendered JSON pieces of a service's instances (built on first use, then reused)."""

    __slots__ = ("_flag_parts", "_service", "host_parts", "name_open", "no_restarts", "status")

    def __init__(self, service: Service) -> None:
        self._service = service
        self.name_open = ',{"InstanceName":"' + _json_text(service.name_prefix)
        procs = service.procs
        self.status = tuple(
            tuple(
                f'","Status":"{INSTANCE_STATUSES[code]}","Reason":"{reason}",'
                f'"ReadyProcesses":{procs if code == RUNNING else 0},"StartTime":"'
                for reason in _REASONS[code]
            )
            for code in range(len(INSTANCE_STATUSES))
        )
        self.no_restarts = '","RestartCount":0,"LastState":[],"InnerIP":"10.'
        #: Per host of the service, everything host-dependent (built on first use).
        self.host_parts: list[str | None] = [None] * service.hosts
        self._flag_parts: list[str | None] = [None] * 32

    def host_part(self, host: int) -> str:
        """From TenantInstanceIP's end to ExternalInstancePort's value: what one host decides."""
        s = self._service
        hv = s.host_base + host * 7
        a, b, c = (hv >> 16) & 255, (hv >> 8) & 255, hv % 250 + 2
        host_ip = f"11.{a}.{b}.{c}"
        zones = s.traits.zones
        part = (
            f'","HostIP":"{host_ip}","HostName":"{_json_text(s.region)}.{host_ip}",'
            f'"TenantHostIP":"192.168.{b}.{c}","ExternalIP":"47.{96 + (hv >> 16) % 32}.{b}.{c}",'
            f'"Zone":"{_json_text(zones[host % len(zones)])}","ExternalInstancePort":'
        )
        self.host_parts[host] = part
        return part

    def flag_part(self, flags: int) -> str:
        """Everything after ExternalInstancePort, for one combination of the per-instance flags."""
        part = self._flag_parts[flags]
        if part is None:
            part = self._flag_parts[flags] = self._render_flags(flags)
        return part

    def _render_flags(self, flags: int) -> str:
        s = self._service
        spot = bool(flags & 1)
        amount = round(s.price * s.spot_discount, 3) if spot else s.price
        resource_type = (
            ResourceType.PUBLIC.value
            if s.resource_type == ResourceType.PUBLIC or flags & 8
            else ResourceType.DEDICATED.value
        )
        values = {
            "CurrentAmount": amount,
            "IsSpot": spot,
            "InstanceType": s.alt_instance_type if flags & 2 else s.instance_type,
            "Role": Role.QUEUE.value if flags & 4 else s.role,
            "ResourceType": resource_type,
            "Isolated": bool(flags & 16),
            "OriginalAmount": s.price,
            "InstancePort": s.port,
            "Namespace": s.name,
            "TotalProcesses": s.procs,
        }
        return "," + orjson.dumps(values).decode()[1:]


# --- construction --------------------------------------------------------------------------------


def _coprime_multiplier(h: int, modulus: int, avoid: tuple[int, ...] = ()) -> int:
    """A multiplier in [1, modulus) coprime with ``modulus`` (so ``a*i+b mod n`` permutes [0, n))."""
    if modulus <= 2:
        return 1
    a = 1 + h % (modulus - 1)
    while math.gcd(a, modulus) != 1 or a in avoid:
        a = a % (modulus - 1) + 1
    return a


def _instance_mix(status: str, count: int) -> tuple[int, int, int]:
    """Cumulative thresholds over a permutation of [0, count): Running, Pending, Failed, rest."""
    run, pend, fail, _term = _MIX_BY_STATUS.get(status, (1.0, 0.0, 0.0, 0.0))
    n_pend = int(count * pend)
    n_fail = int(count * fail)
    n_term = int(count * _term)
    n_run = count - n_pend - n_fail - n_term
    if run == 0.0 and n_run > 0:
        # Nothing should run in this status; give the rounding remainder to the main state instead.
        if pend >= max(fail, _term):
            n_pend += n_run
        elif fail >= _term:
            n_fail += n_run
        else:
            n_term += n_run
        n_run = 0
    return n_run, n_run + n_pend, n_run + n_pend + n_fail


def initial_status(traits: RegionTraits, index: int) -> str:
    """The status service ``index`` of a region is generated with (before any override)."""
    return _STATUS_BY_PERCENT[(traits.service_key(index) >> 14) % 100][0]


def new_service(
    traits: RegionTraits,
    index: int,
    *,
    name: str | None,
    instance_count: int,
    created_at: float,
    create_epoch: int | None = None,
    stopped: bool | None = None,
) -> Service:
    """Build service ``index`` of a region from its key. ``create_epoch`` None: an initial service.

    ``stopped``: force the status to Stopped (True) or away from it (False); None: as the key says.
    """
    s = Service()
    k = traits.service_key(index)
    s.region = traits.region
    s.traits = traits
    s.index = index
    s.key = k
    s.name = name or f"{pick(_WORDS_A, k >> 3)}_{pick(_WORDS_B, k >> 9)}_{index:04d}"
    status = initial_status(traits, index)
    if stopped is True:
        status = "Stopped"
    elif stopped is False and status == "Stopped":
        status = "Running"
    s.status = status
    s.service_type = pick(_SERVICE_TYPES, k >> 17)
    s.role = pick(_SERVICE_ROLES, k >> 21)
    s.queue_share = 2 if s.service_type == ServiceType.ASYNC and s.role == Role.STANDARD else 0
    dedicated = (k >> 24) % 10 < 4
    s.resource_type = ResourceType.DEDICATED.value if dedicated else ResourceType.PUBLIC.value
    if dedicated:
        s.resource, s.resource_alias = pick(traits.resource_groups, k >> 27)
    else:
        s.resource, s.resource_alias = "", ""
    s.spill = 3 if dedicated and (k >> 29) % 4 == 0 else 0
    group_choice = (k >> 31) % 10
    s.group = f"group_{pick(_WORDS_A, k >> 33)}" if group_choice < 2 else s.name
    labels = [("env", pick(_ENVS, k >> 35)), ("team", pick(_TEAMS, k >> 38))]
    if (k >> 41) % 2:
        labels.append(("tier", pick(_TIERS, k >> 42)))
    s.labels = tuple(labels)
    s.workspace_id = pick(traits.workspaces, k >> 44) if (k >> 46) % 4 else ""
    s.quota_id = pick(traits.quotas, k >> 47) if (k >> 48) % 8 == 0 else ""
    s.gateway = pick(traits.gateways, k >> 49) if (k >> 50) % 10 < 3 else ""
    s.parent_uid = traits.service_uid(int((k >> 51) % index)) if index and (k >> 52) % 10 == 0 else ""
    s.service_uid = traits.service_uid(index)
    s.service_id = f"eas-m-{token(k ^ 0x1D, 12)}"

    s.initial_count = 0 if create_epoch is not None else instance_count
    n = s.initial_count
    h2 = mix64(k ^ 0xC0FFEE)
    if create_epoch is None:
        age = max(86_400 + int(h2 % (700 * 86_400)), 2 * n + 7_200)
        s.create_epoch = ANCHOR_EPOCH - age
        s.update_epoch = s.create_epoch + int(mix64(h2) % (age - 3_600))
    else:
        s.create_epoch = s.update_epoch = max(create_epoch, ANCHOR_EPOCH)
    s.first_start = s.create_epoch + 60
    s.step = max(1, (ANCHOR_EPOCH - 120 - s.first_start) // max(n, 1))
    s.perm_a = _coprime_multiplier(h2 >> 7, n)
    s.perm_b = int((h2 >> 23) % max(n, 1))
    s.thresholds = _instance_mix(status, n)
    s.name_prefix = f"{s.name}-{token(h2 ^ 0x5EED, 10, '0123456789abcdef')}-"
    s.suffix_a = _coprime_multiplier(h2 >> 11, SUFFIX_SPACE)
    s.suffix_b = int((h2 >> 29) % SUFFIX_SPACE)
    s.ip_base = int(mix64(k ^ 0x1B) % 60_000)
    s.host_base = int(mix64(k ^ 0x40) % 0xFFFFFF)
    s.hosts = max(1, n // 6 + 1)
    machine = _MACHINES[(k >> 8) % len(_MACHINES)]
    s.instance_type = machine[0]
    s.alt_instance_type = _MACHINES[((k >> 8) + 1) % len(_MACHINES)][0]
    s.alt_threshold = 2 if (k >> 53) % 4 == 0 else 0
    spot_class = (k >> 55) % 10
    s.spot_threshold = 0 if spot_class < 7 else 50 if spot_class < 9 else 128
    s.spot_discount = 0.1 + (k >> 58) % 5 / 10
    s.price = machine[1]
    s.procs = 1 + (k >> 60) % 4
    s.port = pick((8000, 8080, 9000, 8501), k >> 62)

    s.created_at = created_at
    s.deleted_at = None
    s.removed = []
    s.died_at = {}
    s.extra_born = []
    s.extra_start = []
    s.extra_status = []
    s.restarts = {}
    s.last_start = s.first_start + n * s.step - 1 if n else s.create_epoch
    t_run, t_pend, _ = s.thresholds
    s.running = t_run
    s.pending = t_pend - t_run
    s.version = 0
    s._static = None
    s._frags = None
    return s
