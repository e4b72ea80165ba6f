"""Where the access key comes from: a static key, or the Alibaba Cloud default credentials chain.

``DefaultCredentials`` walks the same chain as ``alibabacloud-credentials`` (environment variables,
OIDC, the aliyun CLI profile file, the ``credentials.ini`` file, the ECS RAM role, a credentials
URI), using that library's own providers through their async API for everything that needs more
than reading a value: profile modes, role assumption, ECS metadata, STS.

The library reads its environment variables once, at import, into module constants. So the chain
is built here from an explicit ``environ`` and ``home`` (snapshotted at construction) and every
provider gets explicit arguments (file paths, profile names, role ARNs): a later change to
``os.environ`` is honoured by the next ``DefaultCredentials``, and tests need no import tricks.

Credentials are cached. Temporary ones are refreshed ``refresh_margin`` seconds before they
expire, by one caller while the others wait for its result (no thundering herd). A secret or
token never appears in a ``repr``, an error message or a log record.
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
import orjson

from scanner.client.redact import Redactor, mask_access_key_id
from scanner.clock import Clock, SystemClock
from scanner.errors import ConfigError, CredentialsError

__all__ = [
    "DEFAULT_REFRESH_MARGIN",
    "Credentials",
    "CredentialsProvider",
    "DefaultCredentials",
    "RefreshingCredentials",
    "StaticCredentials",
    "mask_access_key_id",
]

logger = logging.getLogger("scanner.client.credentials")

#: Temporary credentials are replaced this many seconds before they expire.
DEFAULT_REFRESH_MARGIN: Final = 180.0
#: Temporary credentials whose expiry we cannot see are re-fetched this often. Cheap: the
#: library's providers cache them and renew them 15 minutes before they expire.
DEFAULT_RECHECK_INTERVAL: Final = 300.0
#: After a failed refresh (or one that returned credentials already inside the margin), while
#: the credentials held are still valid, wait this long before trying again, so that every
#: request does not repeat the refresh.
REFRESH_FAILURE_BACKOFF: Final = 10.0

ENV_ACCESS_KEY_ID: Final = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET: Final = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN: Final = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_PROFILE: Final = "ALIBABA_CLOUD_PROFILE"
ENV_CREDENTIALS_FILE: Final = "ALIBABA_CLOUD_CREDENTIALS_FILE"
ENV_CLI_PROFILE_DISABLED: Final = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED"
ENV_ECS_METADATA_DISABLED: Final = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
ENV_ECS_METADATA: Final = "ALIBABA_CLOUD_ECS_METADATA"
ENV_IMDSV1_DISABLED: Final = "ALIBABA_CLOUD_IMDSV1_DISABLED"
ENV_ROLE_ARN: Final = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN: Final = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE: Final = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"
ENV_ROLE_SESSION_NAME: Final = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
ENV_STS_REGION: Final = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC_ENDPOINT_ENABLED: Final = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"
ENV_CREDENTIALS_URI: Final = "ALIBABA_CLOUD_CREDENTIALS_URI"

_FIX_HINT: Final = (
    f"To fix: export {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} (plus {ENV_SECURITY_TOKEN} "
    "for an STS token), or run `aliyun configure` and choose a profile with --profile NAME. "
    "To try eas-scan without an account: eas-scan scan --simulate"
)


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """An access key, plus the STS token and expiry of temporary credentials.

    ``expiration`` is a unix time in seconds (None: does not expire, or unknown). ``provider``
    says where the key came from (``env``, ``cli-profile:NAME``, ...). The repr shows neither the
    secret nor the token.
    """

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    expiration: float | None = None
    provider: str = "static"

    @property
    def is_temporary(self) -> bool:
        return self.security_token is not None

    def __repr__(self) -> str:
        parts = [
            f"access_key_id={mask_access_key_id(self.access_key_id)!r}",
            f"provider={self.provider!r}",
            f"sts={self.security_token is not None}",
        ]
        if self.expiration is not None:
            parts.append(f"expiration={self.expiration!r}")
        return f"Credentials({', '.join(parts)})"

    __str__ = __repr__


class CredentialsProvider(Protocol):
    """Anything that can hand out credentials. Called before every request, so it must cache."""

    async def get_credentials(self) -> Credentials: ...


def _require_text(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{field} must be a non-empty string")
    return value


class StaticCredentials:
    """A fixed access key (and optional STS token), e.g. from the command line or a test."""

    __slots__ = ("_credentials",)

    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str | None = None) -> None:
        self._credentials = Credentials(
            access_key_id=_require_text("access_key_id", access_key_id),
            access_key_secret=_require_text("access_key_secret", access_key_secret),
            security_token=(
                None if security_token is None else _require_text("security_token", security_token)
            ),
            provider="static",
        )

    async def get_credentials(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        creds = self._credentials
        return (
            f"StaticCredentials(access_key_id={mask_access_key_id(creds.access_key_id)!r}, "
            f"sts={creds.security_token is not None})"
        )


class RefreshingCredentials:
    """Caches another provider's credentials and renews temporary ones before they expire.

    - No token: fetched once, kept for good.
    - Token with an expiration: re-fetched ``refresh_margin`` seconds before it.
    - Token without a visible expiration: re-fetched every ``recheck_interval`` seconds.

    One caller fetches while the others wait on a lock and then reuse its result. If a refresh
    fails while the cached credentials are still valid, they keep being used (and the refresh is
    retried after a short pause); once they have expired, the failure is raised.
    """

    def __init__(
        self,
        source: CredentialsProvider,
        *,
        clock: Clock | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
    ) -> None:
        if refresh_margin < 0 or recheck_interval <= 0:
            raise ConfigError("refresh_margin must be >= 0 and recheck_interval > 0")
        self._source = source
        self._clock: Clock = clock or SystemClock()
        self._margin = refresh_margin
        self._recheck_interval = recheck_interval
        self._lock = anyio.Lock()
        self._cached: Credentials | None = None
        self._recheck_at = 0.0  # monotonic; for tokens without a visible expiry
        self._retry_at = 0.0  # monotonic; after a failed refresh

    def _is_fresh(self, creds: Credentials) -> bool:
        if creds.security_token is None:
            return True
        if creds.expiration is not None:
            return self._clock.wall().timestamp() < creds.expiration - self._margin
        return self._clock.monotonic() < self._recheck_at

    async def get_credentials(self) -> Credentials:
        cached = self._cached
        if cached is not None and self._is_fresh(cached):
            return cached
        async with self._lock:
            cached = self._cached
            if cached is not None:
                if self._is_fresh(cached):
                    return cached  # another caller refreshed while we waited
                if self._clock.monotonic() < self._retry_at and not self._expired(cached):
                    return cached
            return await self._refresh(cached)

    def _expired(self, creds: Credentials) -> bool:
        return creds.expiration is not None and self._clock.wall().timestamp() >= creds.expiration

    async def _refresh(self, cached: Credentials | None) -> Credentials:
        try:
            fresh = await self._source.get_credentials()
        except CredentialsError as exc:
            if cached is None or self._expired(cached):
                raise
            self._retry_at = self._clock.monotonic() + REFRESH_FAILURE_BACKOFF
            logger.warning("refreshing credentials failed; still using the current ones: %s", exc)
            return cached
        self._cached = fresh
        self._recheck_at = self._clock.monotonic() + self._recheck_interval
        if not self._is_fresh(fresh):
            # Already inside the margin (a short-lived token): use it for a while rather than
            # have every caller fetch again, one after another.
            self._retry_at = self._clock.monotonic() + REFRESH_FAILURE_BACKOFF
        if cached is None:
            logger.debug("using credentials %r", fresh)
        return fresh

    def __repr__(self) -> str:
        return f"RefreshingCredentials({self._source!r}, cached={self._cached!r})"


# --- the default chain -----------------------------------------------------------------------


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _from_library(creds: Any, provider: str) -> Credentials:
    """Convert an ``alibabacloud_credentials`` Credentials object into ours."""
    access_key_id = creds.get_access_key_id()
    access_key_secret = creds.get_access_key_secret()
    if not access_key_id or not access_key_secret:
        raise CredentialsError(f"{provider} returned an empty access key")
    token = creds.get_security_token() or None
    expiration = creds.get_expiration() if hasattr(creds, "get_expiration") else None
    return Credentials(
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        security_token=token,
        expiration=float(expiration) if isinstance(expiration, int | float) else None,
        provider=provider,
    )


class _Source(Protocol):
    """One link of the chain. ``fetch`` returns None when this source is simply not set up;
    it raises ``CredentialsError`` when it is set up but broken. ``note`` says what it found."""

    label: str
    note: str

    async def fetch(self) -> Credentials | None: ...


class _EnvSource:
    label = f"environment variables {ENV_ACCESS_KEY_ID}, {ENV_ACCESS_KEY_SECRET}, {ENV_SECURITY_TOKEN}"

    def __init__(self, environ: Mapping[str, str], redact: Redactor) -> None:
        self._id = environ.get(ENV_ACCESS_KEY_ID) or None
        self._secret = environ.get(ENV_ACCESS_KEY_SECRET) or None
        self._token = environ.get(ENV_SECURITY_TOKEN) or None
        redact.add(self._secret, self._token)
        self.note = "not set"

    async def fetch(self) -> Credentials | None:
        if self._id is None and self._secret is None:
            return None
        if self._id is None or self._secret is None:
            present, missing = (
                (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET)
                if self._id
                else (ENV_ACCESS_KEY_SECRET, ENV_ACCESS_KEY_ID)
            )
            raise CredentialsError(
                f"{present} is set but {missing} is not: set both, or unset {present} to use another source"
            )
        return Credentials(self._id, self._secret, self._token, provider="env")


class _LibrarySource:
    """A source backed by one ``alibabacloud_credentials`` provider, built on first use."""

    label = ""
    note = "not set"

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self._provider: Any = None
        self._name = "library"

    def _build(self) -> Any:
        raise NotImplementedError

    async def _fetch_library(self, what: str) -> Credentials:
        if self._provider is None:
            self._provider = self._build()
        try:
            creds = await self._provider.get_credentials_async()
        except Exception as exc:
            # The library raises bare Exceptions of many kinds; none must escape unexplained,
            # and none may carry a secret into our message.
            raise CredentialsError(
                self._redact(f"{what} failed: {type(exc).__name__}: {_library_message(exc)}")
            ) from None
        return _from_library(creds, self._name)


def _library_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message if message is not None else exc)


class _OidcSource(_LibrarySource):
    label = f"OIDC role ({ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN}, {ENV_OIDC_TOKEN_FILE})"

    def __init__(self, environ: Mapping[str, str], redact: Redactor) -> None:
        super().__init__(redact)
        self._env = environ
        self._name = "oidc"
        required = (ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE)
        self._enabled = all(environ.get(name) for name in required)

    def _build(self) -> Any:
        from alibabacloud_credentials.provider import OIDCRoleArnCredentialsProvider

        env = self._env
        return OIDCRoleArnCredentialsProvider(
            role_arn=env[ENV_ROLE_ARN],
            oidc_provider_arn=env[ENV_OIDC_PROVIDER_ARN],
            oidc_token_file_path=env[ENV_OIDC_TOKEN_FILE],
            role_session_name=env.get(ENV_ROLE_SESSION_NAME) or None,
            sts_region_id=env.get(ENV_STS_REGION) or None,
            enable_vpc=_is_true(env.get(ENV_VPC_ENDPOINT_ENABLED)),
        )

    async def fetch(self) -> Credentials | None:
        if not self._enabled:
            return None
        return await self._fetch_library("assuming the OIDC role")


def _broken_profile_file(path: str, problem: str) -> CredentialsError:
    return CredentialsError(
        f"the aliyun CLI profile file {path} {problem}. Fix it with `aliyun configure` (or edit or "
        "remove the file), or choose another profile with --profile NAME"
    )


class _CliProfileSource(_LibrarySource):
    """``~/.aliyun/config.json``: its profiles hold an AK, an STS token or a role to assume."""

    def __init__(
        self, path: str, profile: str | None, strict: bool, disabled: bool, redact: Redactor
    ) -> None:
        super().__init__(redact)
        self.path = path
        self._profile = profile
        self._strict = strict
        self._disabled = disabled
        self.profile_names: list[str] | None = None  # None: no usable file
        self.chosen: str | None = None
        chosen = profile or "the one the file marks current"
        self.label = f"aliyun CLI profile file {path} (profile: {chosen})"

    def _build(self) -> Any:
        from alibabacloud_credentials.provider import CLIProfileCredentialsProvider

        return CLIProfileCredentialsProvider(profile_name=self.chosen, profile_file=self.path)

    async def fetch(self) -> Credentials | None:
        if self._disabled:
            self.note = f"disabled by {ENV_CLI_PROFILE_DISABLED}=true"
            return None
        if self._provider is not None:
            return await self._fetch_library(f"loading profile {self.chosen!r} from {self.path}")
        config = await self._load()
        if config is None:
            return None
        profiles = config.get("profiles") or []
        if not isinstance(profiles, list) or not all(isinstance(p, dict) for p in profiles):
            raise _broken_profile_file(self.path, "has a 'profiles' entry that is not a list of objects")
        for profile in profiles:
            self._redact.add(*(profile.get(k) for k in ("access_key_secret", "sts_token")))
        names = [str(p.get("name")) for p in profiles if p.get("name")]
        self.profile_names = names
        if not names:
            self.note = "no profiles in the file"
            return None
        name = self._profile or config.get("current")
        if not name:
            raise _broken_profile_file(self.path, "names no current profile")
        if name not in names:
            if self._profile is not None:
                # Perhaps the ini file has it; the chain decides whether this is fatal.
                self.note = f"no profile {name!r} (it has: {', '.join(names)})"
                return None
            raise _broken_profile_file(
                self.path, f"says the current profile is {name!r}, but it has only: {', '.join(names)}"
            )
        self.chosen = name
        self._name = f"cli-profile:{name}"
        return await self._fetch_library(f"loading profile {name!r} from {self.path}")

    async def _load(self) -> dict[str, Any] | None:
        try:
            text = await anyio.Path(self.path).read_bytes()
        except FileNotFoundError:
            self.note = "file not found"
            return None
        except OSError as exc:
            raise _broken_profile_file(self.path, f"cannot be read ({exc.strerror})") from None
        if not text.strip():
            self.note = "the file is empty"
            return None
        try:
            config = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _broken_profile_file(self.path, f"is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise _broken_profile_file(self.path, "is not a JSON object")
        return config


class _IniSource(_LibrarySource):
    """``~/.alibabacloud/credentials.ini`` (or ``$ALIBABA_CLOUD_CREDENTIALS_FILE``)."""

    def __init__(self, path: str, section: str, explicit_path: bool, redact: Redactor) -> None:
        super().__init__(redact)
        self.path = path
        self.section = section
        self._explicit_path = explicit_path
        self.sections: list[str] | None = None
        self._name = f"ini:{section}"
        self.label = f"credentials file {path} [{section}]"

    def _build(self) -> Any:
        from alibabacloud_credentials.provider import ProfileCredentialsProvider

        return ProfileCredentialsProvider(profile_file=self.path, profile_name=self.section)

    async def fetch(self) -> Credentials | None:
        if self._provider is None:
            try:
                text = await anyio.Path(self.path).read_text(encoding="utf-8")
            except FileNotFoundError:
                if self._explicit_path:
                    raise CredentialsError(
                        f"{ENV_CREDENTIALS_FILE} points at {self.path}, which does not exist: "
                        f"fix the path or unset {ENV_CREDENTIALS_FILE}"
                    ) from None
                self.note = "file not found"
                return None
            except OSError as exc:
                raise CredentialsError(f"cannot read {self.path} ({exc.strerror})") from None
            parser = configparser.ConfigParser()
            try:
                parser.read_string(text, source=self.path)
            except configparser.Error as exc:
                first_line = str(exc).splitlines()[0]
                raise CredentialsError(
                    self._redact(f"the credentials file {self.path} cannot be parsed ({first_line}): fix it")
                ) from None
            self.sections = parser.sections()
            for section in self.sections:
                self._redact.add(parser.get(section, "access_key_secret", fallback=None))
            if self.section not in self.sections:
                self.note = f"no section [{self.section}]"
                return None
        return await self._fetch_library(f"loading [{self.section}] from {self.path}")


class _EcsSource(_LibrarySource):
    label = "ECS RAM role (instance metadata service)"

    def __init__(self, environ: Mapping[str, str], redact: Redactor) -> None:
        super().__init__(redact)
        self._disabled = _is_true(environ.get(ENV_ECS_METADATA_DISABLED))
        self._role = environ.get(ENV_ECS_METADATA) or None
        self._imds_v1_disabled = _is_true(environ.get(ENV_IMDSV1_DISABLED))
        self._name = "ecs-ram-role"
        self.note = f"disabled by {ENV_ECS_METADATA_DISABLED}=true" if self._disabled else "not tried"

    def _build(self) -> Any:
        from alibabacloud_credentials.provider import EcsRamRoleCredentialsProvider

        # async_update_enabled=False: no background scheduler thread; we refresh ourselves.
        return EcsRamRoleCredentialsProvider(
            role_name=self._role, disable_imds_v1=self._imds_v1_disabled, async_update_enabled=False
        )

    async def fetch(self) -> Credentials | None:
        if self._disabled:
            return None
        if self._provider is None:
            try:
                self._provider = self._build()
            except ValueError:
                # The library refuses when the variable was set at *its* import time.
                self.note = f"disabled by {ENV_ECS_METADATA_DISABLED}=true when the library was loaded"
                return None
        try:
            return await self._fetch_library("fetching the ECS RAM role credentials")
        except CredentialsError as exc:
            # Normal off ECS; as in the library's chain, fall through to the next source.
            self.note = f"unavailable ({exc})"
            return None


class _UriSource(_LibrarySource):
    label = f"credentials URI ({ENV_CREDENTIALS_URI})"

    def __init__(self, environ: Mapping[str, str], redact: Redactor) -> None:
        super().__init__(redact)
        self._uri = environ.get(ENV_CREDENTIALS_URI) or None
        self._name = "credentials-uri"

    def _build(self) -> Any:
        from alibabacloud_credentials.provider import URLCredentialsProvider

        return URLCredentialsProvider(uri=self._uri)

    async def fetch(self) -> Credentials | None:
        if self._uri is None:
            return None
        return await self._fetch_library("fetching credentials from the credentials URI")


class _Chain:
    """Tries each source in order; remembers the one that worked for later refreshes."""

    def __init__(
        self,
        sources: Iterable[_Source],
        cli: _CliProfileSource,
        ini: _IniSource,
        strict_profile: str | None,
    ) -> None:
        self._sources = list(sources)
        self._cli = cli
        self._ini = ini
        self._strict_profile = strict_profile
        self._chosen: _Source | None = None

    async def get_credentials(self) -> Credentials:
        if self._chosen is not None:
            creds = await self._chosen.fetch()
            if creds is None:
                raise CredentialsError(f"{self._chosen.label} no longer provides credentials")
            return creds
        for source in self._sources:
            creds = await source.fetch()
            if creds is not None:
                self._chosen = source
                return creds
        raise self._not_found()

    def _not_found(self) -> CredentialsError:
        if self._strict_profile is not None:
            return CredentialsError(self._profile_not_found(self._strict_profile))
        lines = ["no Alibaba Cloud credentials found. Looked in:"]
        lines.extend(f"  - {source.label}: {source.note}" for source in self._sources)
        lines.append(_FIX_HINT)
        return CredentialsError("\n".join(lines))

    def _profile_not_found(self, name: str) -> str:
        where = []
        cli_names = self._cli.profile_names
        where.append(
            f"{self._cli.path} ({'profiles: ' + ', '.join(cli_names) if cli_names else self._cli.note})"
        )
        ini_sections = self._ini.sections
        where.append(
            f"{self._ini.path} ({'sections: ' + ', '.join(ini_sections) if ini_sections else self._ini.note})"
        )
        return (
            f"profile {name!r} not found in {' or '.join(where)}. Create it with "
            f"`aliyun configure --profile {name}`, or pick an existing one with --profile NAME. "
            "To try eas-scan without an account: eas-scan scan --simulate"
        )


class DefaultCredentials:
    """The Alibaba Cloud default credentials chain, cached and refreshed.

    Sources, first match wins (the order of ``alibabacloud-credentials``):

    1. ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` (+ ``ALIBABA_CLOUD_SECURITY_TOKEN``);
    2. OIDC role assumption, when ``ALIBABA_CLOUD_ROLE_ARN``, ``..._OIDC_PROVIDER_ARN`` and
       ``..._OIDC_TOKEN_FILE`` are all set;
    3. the aliyun CLI file ``~/.aliyun/config.json``: the profile ``profile``, else
       ``$ALIBABA_CLOUD_PROFILE``, else the file's ``current`` (modes AK, StsToken, RamRoleArn,
       EcsRamRole, OIDC, ChainableRamRoleArn, ... as the library supports them);
    4. ``~/.alibabacloud/credentials.ini`` (or ``$ALIBABA_CLOUD_CREDENTIALS_FILE``), section
       ``profile`` / ``$ALIBABA_CLOUD_PROFILE`` / ``default``;
    5. the ECS RAM role, unless ``ALIBABA_CLOUD_ECS_METADATA_DISABLED=true``;
    6. ``$ALIBABA_CLOUD_CREDENTIALS_URI``.

    Two deliberate differences from the library, both so that a mistake is reported rather than
    silently replaced by another identity: a source that is present but broken (a profile file
    that is not JSON, a ``current`` profile that does not exist, half of an env key pair) raises
    ``CredentialsError`` at once; and an explicit ``profile`` argument (``--profile``) means that
    profile from one of the two files or an error, never the environment or the ECS role.
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        home: str | None = None,
        clock: Clock | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        if profile is not None:
            _require_text("profile", profile)
        env = dict(os.environ if environ is None else environ)
        home = home or env.get("HOME") or os.path.expanduser("~")
        profile_name = profile or env.get(ENV_PROFILE) or None
        redact = Redactor()

        cli = _CliProfileSource(
            os.path.join(home, ".aliyun", "config.json"),
            profile_name,
            strict=profile is not None,
            disabled=_is_true(env.get(ENV_CLI_PROFILE_DISABLED)),
            redact=redact,
        )
        ini_path = env.get(ENV_CREDENTIALS_FILE) or None
        ini = _IniSource(
            ini_path or os.path.join(home, ".alibabacloud", "credentials.ini"),
            profile_name or "default",
            explicit_path=ini_path is not None,
            redact=redact,
        )
        sources: list[_Source]
        if profile is not None:
            sources = [cli, ini]
        else:
            sources = [
                _EnvSource(env, redact),
                _OidcSource(env, redact),
                cli,
                ini,
                _EcsSource(env, redact),
                _UriSource(env, redact),
            ]
        self.profile = profile
        self._chain = _Chain(sources, cli, ini, strict_profile=profile)
        self._cache = RefreshingCredentials(self._chain, clock=clock, refresh_margin=refresh_margin)

    async def get_credentials(self) -> Credentials:
        return await self._cache.get_credentials()

    def __repr__(self) -> str:
        return f"DefaultCredentials(profile={self.profile!r})"
