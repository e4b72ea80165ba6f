"""The simulated organisation: a Resource Directory with a management account and member accounts.

``OrgSpec`` is the shape (a small frozen value); ``Organization`` is its runtime: the members, the
temporary keys AssumeRole issued, and each member's EAS *tenant* (its fleet, rendered pages and
rate limits), served on the shared regional endpoints: the account is whoever the credentials
belong to.

- The management account's RAM user holds the simulator's main AccessKey; its own EAS fleet is
  the simulator's ``fleet`` (empty in the org presets). It is not listed by ListAccounts.
- Member ``i`` has a 16-digit AccountId, a DisplayName, a folder (the root or one of
  ``folders`` child folders), a Status, and ``instances`` from a long-tailed split of
  ``total_instances`` (members in a non-success status get none). Everything derives from the seed.
- A member's fleet is built the first time it is needed (a successful AssumeRole, or a
  ground-truth query), so a 1,000-account organisation starts at once; it never churns.
- Knobs (counts of members, chosen from the end of the list, in this order, never overlapping):
  ``non_success`` members in a non-success status, ``missing_role`` members without the role
  (``EntityNotExist.Role``), ``eas_denied`` members whose role may not call EAS (``Forbidden.RAM``).
  ``external_id``: every role requires it. ``token_ttl``: tokens live at most this long, whatever
  was asked. ``assume_role_rate``: AssumeRole calls per second of the management account
  (``Throttling.User`` above it); ``list_accounts_rate``: the same for ListAccounts and
  ListAccountsForParent together (burst 5). ``accounts_page_cap``: ListAccounts answers at most
  this many per page. ``list_management``: ListAccounts lists the management account too, first
  (it has no member role: AssumeRole into it is ``EntityNotExist.Role``). ``set_member`` changes
  one member at run time. ``rpc_latency_ms``: STS and ResourceManager answer that much later
  (simulator clock). ``assume_role_error_rate``: that fraction of AssumeRole calls (seeded)
  answer 503 ``ServiceUnavailable``; ``fail_next_assume_roles`` (run time): the next N do.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from scanner.errors import ConfigError
from scanner.simulator.auth import AccessKey, Authenticator
from scanner.simulator.cache import PageCache
from scanner.simulator.derive import ANCHOR_EPOCH, M64, iso, mix64, token
from scanner.simulator.fleet import Fleet
from scanner.simulator.pages import Pages
from scanner.simulator.spec import FleetSpec, InstanceDistribution, LongTail, allocate_counts
from scanner.simulator.throttle import AdmissionBucket, ServerThrottle

__all__ = [
    "DEFAULT_ROLE_NAME",
    "NON_SUCCESS_STATUSES",
    "ORG_PRESETS",
    "SUCCESS_STATUSES",
    "IssuedKey",
    "Member",
    "OrgSpec",
    "Organization",
    "Tenant",
    "org_preset",
]

DEFAULT_ROLE_NAME: Final = "ResourceDirectoryAccountAccessRole"
#: Members in these statuses are real accounts a scan can enter.
SUCCESS_STATUSES: Final = ("CreateSuccess", "InviteSuccess", "PromoteSuccess")
#: The others (Resource Directory's account statuses, API 2020-03-31 and 2022-04-19).
NON_SUCCESS_STATUSES: Final = (
    "CreateFailed",
    "CreateVerifying",
    "PromoteVerifying",
    "CreateExpired",
    "PromoteFailed",
    "CreateCancelled",
    "PromoteExpired",
    "PromoteCancelled",
)
_ALL_STATUSES: Final = frozenset(SUCCESS_STATUSES + NON_SUCCESS_STATUSES)
_BASE62: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_ENVS: Final = ("prod", "staging", "dev", "test")
_TEAMS: Final = ("search", "ads", "recsys", "nlp", "cv", "speech", "risk", "platform")
_MAX_MEMBERS: Final = 100_000


@dataclass(frozen=True, slots=True)
class OrgSpec:
    """The shape of a simulated organisation (see the module docstring for the knobs).

    ``fleet`` is the template of every member's fleet: its regions (shared by every account and
    the management account), services per region and instance distribution; its
    ``total_instances`` is ignored: ``total_instances`` is split over the members by
    ``account_sizes``.
    """

    members: int = 12
    fleet: FleetSpec = field(
        default_factory=lambda: FleetSpec(regions=3, services_per_region=8, distribution=LongTail(1.6, 400))
    )
    total_instances: int = 3_000
    account_sizes: InstanceDistribution = field(default_factory=lambda: LongTail(1.0, 1_000_000))
    folders: int = 3
    role_name: str = DEFAULT_ROLE_NAME
    external_id: str | None = None
    max_session_duration: int = 3600
    token_ttl: int | None = None
    assume_role_rate: float | None = None
    assume_role_burst: int = 10
    non_success: int = 0
    missing_role: int = 0
    eas_denied: int = 0
    accounts_page_cap: int = 100
    list_accounts_rate: float | None = None
    list_management: bool = False
    rpc_latency_ms: float = 0.0
    assume_role_error_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.members <= _MAX_MEMBERS:
            raise ConfigError(f"members must be between 0 and {_MAX_MEMBERS}, got {self.members}")
        if self.total_instances < 0:
            raise ConfigError(f"total_instances must be >= 0, got {self.total_instances}")
        if self.folders < 0:
            raise ConfigError(f"folders must be >= 0, got {self.folders}")
        knobs = (self.non_success, self.missing_role, self.eas_denied)
        if any(k < 0 for k in knobs) or sum(knobs) > self.members:
            raise ConfigError(
                "non_success, missing_role and eas_denied must be >= 0 and add up to at most "
                f"members ({self.members}); got {knobs}"
            )
        if not 3600 <= self.max_session_duration <= 43_200:  # a RAM role's MaxSessionDuration range
            raise ConfigError(f"max_session_duration must be 3600..43200 s, got {self.max_session_duration}")
        if self.token_ttl is not None and self.token_ttl < 1:
            raise ConfigError(f"token_ttl must be >= 1 s, got {self.token_ttl}")
        if self.assume_role_rate is not None and not self.assume_role_rate > 0:
            raise ConfigError(f"assume_role_rate must be > 0, got {self.assume_role_rate}")
        if self.assume_role_burst < 1:
            raise ConfigError(f"assume_role_burst must be >= 1, got {self.assume_role_burst}")
        if self.list_accounts_rate is not None and not self.list_accounts_rate > 0:
            raise ConfigError(f"list_accounts_rate must be > 0, got {self.list_accounts_rate}")
        if not self.rpc_latency_ms >= 0:
            raise ConfigError(f"rpc_latency_ms must be >= 0, got {self.rpc_latency_ms}")
        if not 0.0 <= self.assume_role_error_rate <= 1.0:
            raise ConfigError(f"assume_role_error_rate must be in [0, 1], got {self.assume_role_error_rate}")
        if not 1 <= self.accounts_page_cap <= 100:
            raise ConfigError(f"accounts_page_cap must be 1..100, got {self.accounts_page_cap}")
        if not self.role_name or "/" in self.role_name:
            raise ConfigError(f"role_name must be a non-empty name without '/', got {self.role_name!r}")

    def management_fleet(self) -> FleetSpec:
        """The management account's own fleet: the members' regions, no services."""
        return FleetSpec(regions=self.fleet.regions, services_per_region=0, total_instances=0)

    def with_changes(self, **changes: Any) -> OrgSpec:
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


#: The named organisations. ``org-large`` is sized for benchmarks; its fleets are built lazily.
ORG_PRESETS: Final[Mapping[str, OrgSpec]] = {
    "org-small": OrgSpec(
        members=12,
        fleet=FleetSpec(regions=3, services_per_region=8, distribution=LongTail(1.6, 400)),
        total_instances=3_000,
        folders=3,
        non_success=1,
    ),
    "org-large": OrgSpec(
        members=1_000,
        fleet=FleetSpec(regions=3, services_per_region=6, distribution=LongTail(2.0, 20_000)),
        total_instances=500_000,
        account_sizes=LongTail(1.2, 40_000),
        folders=20,
        non_success=10,
    ),
}


def org_preset(name: str) -> OrgSpec:
    try:
        return ORG_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown organisation preset {name!r}; choose one of {', '.join(ORG_PRESETS)}"
        ) from None


@dataclass(slots=True)
class Member:
    """A member account: what ListAccounts shows, the knobs that apply to it, and its counters."""

    index: int
    account_id: str
    display_name: str
    folder_id: str
    status: str
    account_type: str
    join_method: str
    join_epoch: int
    tags: tuple[tuple[str, str], ...]
    instances: int
    role_exists: bool = True
    eas_denied: bool = False
    external_id: str | None = None
    rate_limit: float | None = None
    assume_role_calls: int = 0
    assume_role_refused: int = 0
    requests: int = 0

    @property
    def scannable(self) -> bool:
        """Whether a scan can enter it: a success status, the role there, EAS allowed."""
        return self.status in SUCCESS_STATUSES and self.role_exists and not self.eas_denied

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.account_id,
            "name": self.display_name,
            "folder": self.folder_id,
            "status": self.status,
            "type": self.account_type,
            "role": self.role_exists,
            "eas_denied": self.eas_denied,
            "external_id_required": self.external_id is not None,
            "rate_limit": self.rate_limit,
            "instances": self.instances if self.status in SUCCESS_STATUSES else 0,
            "assume_role_calls": self.assume_role_calls,
            "assume_role_refused": self.assume_role_refused,
            "requests": self.requests,
        }


class Tenant:
    """A member account as EAS serves it: its fleet, pages and rate limits, and its switches."""

    __slots__ = ("fleet", "forbidden", "limiter", "member", "pages")

    def __init__(self, member: Member, fleet: Fleet, pages: Pages, limiter: ServerThrottle) -> None:
        self.member = member
        self.fleet = fleet
        self.pages = pages
        self.limiter = limiter
        self.forbidden: set[str] = set()

    @property
    def denied(self) -> bool:
        return self.member.eas_denied


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """Temporary credentials AssumeRole issued (the key itself lives in the Authenticator)."""

    access_key_id: str
    account_id: str
    role_name: str
    session_name: str
    role_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Folder:
    folder_id: str
    name: str


class Organization:
    """The runtime of an ``OrgSpec``: members, temporary keys, tenants. Built by ``Simulator``.

    ``auth`` is the simulator's authenticator (temporary keys are added to it); ``cache`` the
    shared page cache (each tenant's pages are scoped by its account); ``monotonic`` the
    simulator clock (rate limits); ``wall`` the signing clock (token expiry, like the signatures).
    """

    def __init__(
        self,
        spec: OrgSpec,
        seed: int,
        *,
        management_key: AccessKey,
        auth: Authenticator,
        cache: PageCache,
        monotonic: Callable[[], float],
        wall: Callable[[], datetime],
        rate_limit: float | None = None,
        burst: int = 5,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self._key = mix64((seed ^ 0x0_26_A9) & M64)
        self._auth = auth
        self._cache = cache
        self._monotonic = monotonic
        self._wall = wall
        self._rate_limit = rate_limit
        self._burst = burst
        self.management_key_id = management_key.access_key_id
        ids = self._account_ids(spec.members + 1)
        self.management_account_id = ids[0]
        self.management_user_id = self._digits(self._key ^ 0x05E4, 16)
        self.management_user_name = "eas-fleet-scanner"
        self.resource_directory_id = "rd-" + token(self._key ^ 0x4D, 6, _ALNUM)
        self.root_folder_id = "r-" + token(self._key ^ 0x4007, 6, _BASE62)
        self.folders = [
            Folder("fd-" + token(self._key ^ (0xF0 + i), 10, _BASE62), f"{_TEAMS[i % len(_TEAMS)]}-{i}")
            for i in range(spec.folders)
        ]
        self.folder_ids = {self.root_folder_id, *(f.folder_id for f in self.folders)}
        self.role_id_base = 300_000_000_000_000_000 + self._key % 100_000_000_000_000_000
        self.members = self._members(spec, ids[1:])
        #: The management account as ListAccounts shows it with ``list_management`` (not a member).
        self.management_member = Member(
            index=-1,
            account_id=self.management_account_id,
            display_name="management",
            folder_id=self.root_folder_id,
            status="CreateSuccess",
            account_type="CloudAccount",
            join_method="created",
            join_epoch=ANCHOR_EPOCH - 86_400 * 401,
            tags=(("env", "prod"), ("team", "platform")),
            instances=0,
            role_exists=False,
        )
        self.by_id = {m.account_id: m for m in self.members}
        self._tenants: dict[str, Tenant] = {}
        self._key_tenant: dict[str, Tenant] = {}
        self.issued: dict[str, IssuedKey] = {}
        self._issued_count = 0
        self._fault_rng = random.Random(f"org-faults/{seed}")
        #: The next this-many AssumeRole calls answer 503 (set at run time, counts down).
        self.fail_next_assume_roles = 0
        self.assume_role_faults = 0
        self._sts_bucket: AdmissionBucket | None = None
        self._rm_bucket: AdmissionBucket | None = None
        self.assume_role_throttled = 0
        self.list_accounts_throttled = 0
        self.configure_assume_role_limit(spec.assume_role_rate, spec.assume_role_burst)
        self.configure_list_accounts_limit(spec.list_accounts_rate)

    # --- construction -----------------------------------------------------------------------

    @staticmethod
    def _digits(h: int, n: int) -> str:
        return str(10 ** (n - 1) + mix64(h) % (9 * 10 ** (n - 1)))

    def _account_ids(self, n: int) -> list[str]:
        ids: list[str] = []
        seen: set[str] = set()
        h = self._key
        while len(ids) < n:
            h = mix64(h ^ 0xACC7)
            candidate = self._digits(h, 16)
            if candidate not in seen:
                seen.add(candidate)
                ids.append(candidate)
        return ids

    def _members(self, spec: OrgSpec, ids: list[str]) -> list[Member]:
        n = spec.members
        special = spec.non_success + spec.missing_role + spec.eas_denied
        non_success = set(range(n - spec.non_success, n))
        missing = set(range(n - spec.non_success - spec.missing_role, n - spec.non_success))
        denied = set(range(n - special, n - spec.non_success - spec.missing_role))
        eligible = [i not in non_success for i in range(n)]
        sizes = allocate_counts(
            spec.total_instances, eligible, spec.account_sizes, random.Random(f"org-sizes/{self.seed}")
        )
        members: list[Member] = []
        for i, account_id in enumerate(ids):
            h = mix64(self._key ^ (i + 1) * 0x9E37)
            if i in non_success:
                status = NON_SUCCESS_STATUSES[(i - (n - spec.non_success)) % len(NON_SUCCESS_STATUSES)]
            else:
                status = SUCCESS_STATUSES[0 if h % 10 < 6 else 1 if h % 10 < 9 else 2]
            invited = status.startswith("Invite")
            slot = h >> 8
            folder = self.root_folder_id
            if self.folders and slot % 5:
                folder = self.folders[(slot // 5) % len(self.folders)].folder_id
            members.append(
                Member(
                    index=i,
                    account_id=account_id,
                    display_name=f"{_TEAMS[(h >> 20) % len(_TEAMS)]}-{_ENVS[(h >> 24) % len(_ENVS)]}-{i:03d}",
                    folder_id=folder,
                    status=status,
                    account_type="CloudAccount"
                    if invited or status.startswith("Promote")
                    else "ResourceAccount",
                    join_method="invited" if invited else "created",
                    join_epoch=ANCHOR_EPOCH - 86_400 * 400 + i * 3_607 + (h >> 32) % 3_600,
                    tags=(("env", _ENVS[(h >> 24) % len(_ENVS)]), ("team", _TEAMS[(h >> 20) % len(_TEAMS)])),
                    instances=sizes[i],
                    role_exists=i not in missing and status in SUCCESS_STATUSES,
                    eas_denied=i in denied,
                    external_id=spec.external_id,
                )
            )
        return members

    # --- members and tenants ----------------------------------------------------------------

    def member(self, account_id: str) -> Member:
        try:
            return self.by_id[account_id]
        except KeyError:
            raise ConfigError(f"no member account {account_id!r} in the organisation") from None

    def fleet_spec(self, member: Member) -> FleetSpec:
        template = self.spec.fleet
        if member.status not in SUCCESS_STATUSES:
            return FleetSpec(regions=template.regions, services_per_region=0, total_instances=0)
        return FleetSpec(
            regions=template.regions,
            services_per_region=template.services_per_region,
            total_instances=member.instances,
            distribution=template.distribution,
        )

    def tenant(self, account_id: str) -> Tenant:
        """The member's EAS tenant, built (fleet included) the first time it is asked for."""
        tenant = self._tenants.get(account_id)
        if tenant is None:
            member = self.member(account_id)
            fleet = Fleet(
                self.fleet_spec(member),
                (self.seed * 1_000_003 + member.index + 1) & M64,
                caller_uid=member.account_id,
            )
            rate = member.rate_limit if member.rate_limit is not None else self._rate_limit
            limiter = ServerThrottle(self._monotonic, rate, self._burst)
            tenant = Tenant(member, fleet, Pages(fleet, self._cache, scope=member.account_id), limiter)
            self._tenants[account_id] = tenant
        return tenant

    def built_tenants(self) -> Iterator[Tenant]:
        return iter(self._tenants.values())

    def tenant_for_key(self, access_key_id: str) -> Tenant | None:
        """The tenant a verified key belongs to (None: the management account). The EAS hot path."""
        tenant = self._key_tenant.get(access_key_id)
        if tenant is not None:
            tenant.member.requests += 1
        return tenant

    def configure_limits(self, rate: float | None, burst: int) -> None:
        """The simulator-wide per-(region, action) limit, for every member without its own."""
        self._rate_limit, self._burst = rate, burst
        for tenant in self._tenants.values():
            if tenant.member.rate_limit is None:
                tenant.limiter.configure(rate, burst)

    def configure_assume_role_limit(self, rate: float | None, burst: int) -> None:
        self.spec = self.spec.with_changes(assume_role_rate=rate, assume_role_burst=burst)
        self._sts_bucket = None if rate is None else AdmissionBucket(rate, burst, self._monotonic())

    def configure_list_accounts_limit(self, rate: float | None) -> None:
        self.spec = self.spec.with_changes(list_accounts_rate=rate)
        self._rm_bucket = None if rate is None else AdmissionBucket(rate, 5, self._monotonic())

    def list_accounts_wait(self) -> float:
        """0.0 if a ListAccounts(ForParent) may go ahead now, else the seconds until it could."""
        bucket = self._rm_bucket
        if bucket is None:
            return 0.0
        wait = bucket.take(self._monotonic())
        if wait:
            self.list_accounts_throttled += 1
        return wait

    def rpc_latency(self) -> float:
        """Seconds STS and ResourceManager wait before answering."""
        return self.spec.rpc_latency_ms / 1000.0

    def assume_role_fault(self) -> bool:
        """Whether this AssumeRole call answers 503 (``fail_next_assume_roles``, else the rate)."""
        if self.fail_next_assume_roles > 0:
            self.fail_next_assume_roles -= 1
        elif not (
            self.spec.assume_role_error_rate and self._fault_rng.random() < self.spec.assume_role_error_rate
        ):
            return False
        self.assume_role_faults += 1
        return True

    def assume_role_wait(self) -> float:
        """0.0 if an AssumeRole may go ahead now, else the seconds until it could."""
        bucket = self._sts_bucket
        if bucket is None:
            return 0.0
        wait = bucket.take(self._monotonic())
        if wait:
            self.assume_role_throttled += 1
        return wait

    def set_member(self, account_id: str, **changes: Any) -> Member:
        """Change a member at run time: ``status``, ``role_exists``, ``eas_denied``,
        ``external_id``, ``rate_limit`` (None: the simulator-wide limit)."""
        member = self.member(account_id)
        allowed = {"status", "role_exists", "eas_denied", "external_id", "rate_limit"}
        unknown = set(changes) - allowed
        if unknown:
            raise ConfigError(f"unknown member field(s) {sorted(unknown)}; known: {sorted(allowed)}")
        if "status" in changes and changes["status"] not in _ALL_STATUSES:
            raise ConfigError(f"status must be one of {sorted(_ALL_STATUSES)}, got {changes['status']!r}")
        if changes.get("rate_limit") is not None and not float(changes["rate_limit"]) > 0:
            raise ConfigError(f"rate_limit must be > 0 or None, got {changes['rate_limit']!r}")
        for name, value in changes.items():
            setattr(member, name, value)
        tenant = self._tenants.get(account_id)
        if tenant is not None and "rate_limit" in changes:
            rate = member.rate_limit if member.rate_limit is not None else self._rate_limit
            tenant.limiter.configure(rate, self._burst)
        return member

    def forbid_region(self, account_id: str, region: str, forbidden: bool = True) -> None:
        tenant = self.tenant(account_id)
        if region not in tenant.fleet.regions:
            raise ConfigError(f"unknown region {region!r}")
        if forbidden:
            tenant.forbidden.add(region)
        else:
            tenant.forbidden.discard(region)

    # --- temporary credentials ----------------------------------------------------------------

    def now_epoch(self) -> int:
        return math.floor(self._wall().timestamp())

    def issue(self, member: Member, role_name: str, session_name: str, duration: int) -> dict[str, Any]:
        """New temporary credentials for ``member``'s role: the AssumeRole response body."""
        self._issued_count += 1
        n = self._issued_count
        h = mix64(self._key ^ mix64(n * 0x51ED))
        access_key_id = "STS.NU" + token(h, 23, _BASE62)
        secret = token(h ^ 0x5EC, 44, _BASE62)
        security_token = "CAIS" + token(h ^ 0x70C, 340, _BASE62 + "+/") + "=="
        ttl = duration if self.spec.token_ttl is None else min(duration, int(self.spec.token_ttl))
        expires_at = self.now_epoch() + ttl
        role_id = str(self.role_id_base + member.index)
        self._auth.add(AccessKey(access_key_id, secret, security_token, expires_at=expires_at))
        self.issued[access_key_id] = IssuedKey(
            access_key_id, member.account_id, role_name, session_name, role_id, expires_at
        )
        self._key_tenant[access_key_id] = self.tenant(member.account_id)
        member.assume_role_calls += 1
        return {
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{member.account_id}:role/{role_name}/{session_name}",
                "AssumedRoleId": f"{role_id}:{session_name}",
            },
            "Credentials": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret,
                "SecurityToken": security_token,
                "Expiration": iso(expires_at),
            },
        }

    def expire_tokens(self, account_id: str | None = None) -> int:
        """Expire (now) every temporary key issued so far, or those of one account; return how many."""
        if account_id is not None:
            self.member(account_id)
        now = self.now_epoch()
        count = 0
        for issued in self.issued.values():
            if account_id is not None and issued.account_id != account_id:
                continue
            if self._auth.expire(issued.access_key_id, now):
                count += 1
        return count

    # --- facts --------------------------------------------------------------------------------

    def scannable(self) -> list[Member]:
        return [m for m in self.members if m.scannable]

    def info(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "management_account_id": self.management_account_id,
            "management_user": self.management_user_name,
            "resource_directory_id": self.resource_directory_id,
            "root_folder_id": self.root_folder_id,
            "folders": [{"id": f.folder_id, "name": f.name} for f in self.folders],
            "role_name": spec.role_name,
            "external_id": spec.external_id,
            "max_session_duration": spec.max_session_duration,
            "token_ttl": spec.token_ttl,
            "assume_role_rate": spec.assume_role_rate,
            "assume_role_burst": spec.assume_role_burst,
            "assume_role_throttled": self.assume_role_throttled,
            "assume_role_error_rate": spec.assume_role_error_rate,
            "assume_role_faults": self.assume_role_faults,
            "rpc_latency_ms": spec.rpc_latency_ms,
            "accounts_page_cap": spec.accounts_page_cap,
            "list_management": spec.list_management,
            "list_accounts_rate": spec.list_accounts_rate,
            "list_accounts_throttled": self.list_accounts_throttled,
            "tokens_issued": self._issued_count,
            "instances": sum(m.instances for m in self.members if m.status in SUCCESS_STATUSES),
            "accounts": [m.to_dict() for m in self.members],
        }

    def summary_accounts(self) -> list[dict[str, Any]]:
        """The short per-account list ``eas-scan simulate`` prints."""
        return [
            {
                "id": m.account_id,
                "name": m.display_name,
                "folder": m.folder_id,
                "status": m.status,
                "instances": m.instances if m.status in SUCCESS_STATUSES else 0,
            }
            for m in self.members
        ]
