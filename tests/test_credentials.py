"""The credentials chain, caching and refresh, and that no secret ever shows. No network, ever."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from scanner.client.credentials import (
    Credentials,
    DefaultCredentials,
    RefreshingCredentials,
    StaticCredentials,
    mask_access_key_id,
)
from scanner.errors import ConfigError, CredentialsError
from scanner.testing import EPOCH, FakeClock
from tests import netguard

SECRET = "sEcReT-9f8e7d6c5b4a"
TOKEN = "tOkEn-STS-0123456789abcdef"
AK_ID = "LTAI5tExampleKeyId01"
NO_ECS = {"ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


@pytest.fixture(autouse=True)
def _no_network_attempts() -> Iterator[None]:
    already = len(netguard.ATTEMPTS)
    yield
    assert not netguard.ATTEMPTS[already:], "the credentials chain tried to reach the network"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def write_cli_config(home: Path, config: Any) -> Path:
    path = home / ".aliyun" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def write_ini(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CLI_CONFIG = {
    "current": "dev",
    "profiles": [
        {"name": "dev", "mode": "AK", "access_key_id": "dev-id-0001", "access_key_secret": SECRET},
        {
            "name": "prod",
            "mode": "StsToken",
            "access_key_id": "STS.prod-id-0002",
            "access_key_secret": SECRET + "-prod",
            "sts_token": TOKEN,
        },
    ],
}


# --- the Credentials value and StaticCredentials ---------------------------------------------


def test_credentials_repr_masks_the_id_and_hides_secret_and_token() -> None:
    creds = Credentials(AK_ID, SECRET, TOKEN, expiration=1.0e9, provider="env")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert SECRET not in text
        assert TOKEN not in text
        assert AK_ID not in text
    assert repr(creds) == (
        "Credentials(access_key_id='LTAI****Id01', provider='env', sts=True, expiration=1000000000.0)"
    )


def test_mask_access_key_id() -> None:
    assert mask_access_key_id("LTAI5tAbCdEfwxyz") == "LTAI****wxyz"
    assert mask_access_key_id("short") == "****"


@pytest.mark.asyncio
async def test_static_credentials() -> None:
    provider = StaticCredentials(AK_ID, SECRET, TOKEN)
    creds = await provider.get_credentials()
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (AK_ID, SECRET, TOKEN)
    assert creds.provider == "static"
    assert creds.is_temporary
    assert SECRET not in repr(provider)
    assert TOKEN not in repr(provider)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", SECRET), "access_key_id"),
        ((AK_ID, "  "), "access_key_secret"),
        ((AK_ID, None), "access_key_secret"),
        ((AK_ID, SECRET, ""), "security_token"),
    ],
)
def test_static_credentials_validates_each_field(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        StaticCredentials(*args)


# --- the default chain -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_env_vars(home: Path) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, **NO_ECS}
    creds = await DefaultCredentials(environ=env, home=str(home)).get_credentials()
    assert creds == Credentials(AK_ID, SECRET, None, provider="env")


@pytest.mark.asyncio
async def test_env_vars_with_sts_token(home: Path) -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN,
        **NO_ECS,
    }
    creds = await DefaultCredentials(environ=env, home=str(home)).get_credentials()
    assert creds == Credentials(AK_ID, SECRET, TOKEN, provider="env")


@pytest.mark.asyncio
async def test_env_vars_win_over_the_profile_file(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, **NO_ECS}
    creds = await DefaultCredentials(environ=env, home=str(home)).get_credentials()
    assert creds.provider == "env"


@pytest.mark.asyncio
async def test_half_an_env_key_pair_is_an_error_naming_both_variables(home: Path) -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, **NO_ECS}
    with pytest.raises(CredentialsError) as caught:
        await DefaultCredentials(environ=env, home=str(home)).get_credentials()
    message = str(caught.value)
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET is set but ALIBABA_CLOUD_ACCESS_KEY_ID is not" in message
    assert SECRET not in message


@pytest.mark.asyncio
async def test_os_environ_is_read_at_construction_not_at_library_import(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # alibabacloud_credentials is long imported (with these variables unset) by now.
    import alibabacloud_credentials.utils.auth_util as library_env

    assert library_env.environment_access_key_id is None
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", AK_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    creds = await DefaultCredentials(home=str(home)).get_credentials()
    assert (creds.access_key_id, creds.provider) == (AK_ID, "env")


@pytest.mark.asyncio
async def test_cli_profile_current_ak_mode(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    creds = await DefaultCredentials(environ=NO_ECS, home=str(home)).get_credentials()
    assert creds == Credentials("dev-id-0001", SECRET, None, provider="cli-profile:dev")


@pytest.mark.asyncio
async def test_cli_profile_chosen_by_argument_sts_token_mode(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    creds = await DefaultCredentials("prod", environ=NO_ECS, home=str(home)).get_credentials()
    assert creds == Credentials("STS.prod-id-0002", SECRET + "-prod", TOKEN, provider="cli-profile:prod")


@pytest.mark.asyncio
async def test_cli_profile_chosen_by_env_var(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    env = {"ALIBABA_CLOUD_PROFILE": "prod", **NO_ECS}
    creds = await DefaultCredentials(environ=env, home=str(home)).get_credentials()
    assert creds.provider == "cli-profile:prod"
    assert creds.security_token == TOKEN


@pytest.mark.asyncio
async def test_profile_argument_wins_over_env_vars(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, **NO_ECS}
    creds = await DefaultCredentials("dev", environ=env, home=str(home)).get_credentials()
    assert creds.provider == "cli-profile:dev"


@pytest.mark.asyncio
async def test_ini_file_default_section(home: Path) -> None:
    write_ini(
        home / ".alibabacloud" / "credentials.ini",
        f"[default]\ntype = access_key\naccess_key_id = ini-id-0003\naccess_key_secret = {SECRET}\n",
    )
    creds = await DefaultCredentials(environ=NO_ECS, home=str(home)).get_credentials()
    assert creds == Credentials("ini-id-0003", SECRET, None, provider="ini:default")


@pytest.mark.asyncio
async def test_ini_file_from_env_var_and_profile_section(home: Path, tmp_path: Path) -> None:
    path = write_ini(
        tmp_path / "elsewhere" / "creds.ini",
        f"[default]\ntype = access_key\naccess_key_id = a-0000\naccess_key_secret = x{SECRET}\n"
        f"[ops]\ntype = access_key\naccess_key_id = ops-id-0004\naccess_key_secret = {SECRET}\n",
    )
    env = {"ALIBABA_CLOUD_CREDENTIALS_FILE": str(path), **NO_ECS}
    creds = await DefaultCredentials("ops", environ=env, home=str(home)).get_credentials()
    assert creds == Credentials("ops-id-0004", SECRET, None, provider="ini:ops")


@pytest.mark.asyncio
async def test_nothing_found_says_where_it_looked_and_how_to_fix(home: Path) -> None:
    with pytest.raises(CredentialsError) as caught:
        await DefaultCredentials(environ=NO_ECS, home=str(home)).get_credentials()
    message = str(caught.value)
    for expected in (
        "no Alibaba Cloud credentials found",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
        str(home / ".aliyun" / "config.json"),
        "the one the file marks current",
        str(home / ".alibabacloud" / "credentials.ini"),
        "[default]",
        "ECS RAM role",
        "disabled by ALIBABA_CLOUD_ECS_METADATA_DISABLED=true",
        "ALIBABA_CLOUD_CREDENTIALS_URI",
        "aliyun configure",
        "--profile",
        "eas-scan scan --simulate",
    ):
        assert expected in message, expected


@pytest.mark.asyncio
async def test_nothing_found_names_the_chosen_profile(home: Path) -> None:
    env = {"ALIBABA_CLOUD_PROFILE": "ops", **NO_ECS}
    with pytest.raises(CredentialsError, match=r"profile: ops\).*\n.*\[ops\]"):
        await DefaultCredentials(environ=env, home=str(home)).get_credentials()


@pytest.mark.asyncio
async def test_ecs_metadata_enabled_in_environ_is_still_never_contacted_in_tests(home: Path) -> None:
    # conftest disabled ECS metadata before the library was imported; the library then refuses
    # to build its ECS provider whatever our environ says, so the chain notes that and moves on.
    with pytest.raises(CredentialsError) as caught:
        await DefaultCredentials(environ={}, home=str(home)).get_credentials()
    assert "when the library was loaded" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"current": "dev", "profiles": [', "is not valid JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"current": "dev", "profiles": "dev"}', "has a 'profiles' entry that is not a list of objects"),
        (
            json.dumps({**CLI_CONFIG, "current": "gone"}),
            "says the current profile is 'gone', but it has only: dev, prod",
        ),
    ],
)
@pytest.mark.asyncio
async def test_broken_profile_file_gets_its_own_message(home: Path, content: str, problem: str) -> None:
    path = write_cli_config(home, content)
    env = {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "", **NO_ECS}
    with pytest.raises(CredentialsError) as caught:
        await DefaultCredentials(environ=env, home=str(home)).get_credentials()
    message = str(caught.value)
    assert f"the aliyun CLI profile file {path} {problem}" in message
    assert "aliyun configure" in message
    assert SECRET not in message


@pytest.mark.asyncio
async def test_unknown_profile_argument_lists_what_exists(home: Path) -> None:
    path = write_cli_config(home, CLI_CONFIG)
    with pytest.raises(CredentialsError) as caught:
        await DefaultCredentials("staging", environ=NO_ECS, home=str(home)).get_credentials()
    message = str(caught.value)
    assert f"profile 'staging' not found in {path} (profiles: dev, prod)" in message
    assert str(home / ".alibabacloud" / "credentials.ini") in message
    assert "aliyun configure --profile staging" in message
    assert SECRET not in message


@pytest.mark.asyncio
async def test_profile_argument_found_only_in_the_ini_file(home: Path) -> None:
    write_cli_config(home, CLI_CONFIG)
    write_ini(
        home / ".alibabacloud" / "credentials.ini",
        f"[staging]\ntype = access_key\naccess_key_id = stg-id-0005\naccess_key_secret = {SECRET}\n",
    )
    creds = await DefaultCredentials("staging", environ=NO_ECS, home=str(home)).get_credentials()
    assert creds.provider == "ini:staging"


@pytest.mark.asyncio
async def test_a_profile_the_library_cannot_load_is_reported_without_its_secret(home: Path) -> None:
    config = {
        "current": "odd",
        "profiles": [{"name": "odd", "mode": "NoSuchMode", "access_key_secret": SECRET}],
    }
    path = write_cli_config(home, config)
    with pytest.raises(CredentialsError) as caught:
        await DefaultCredentials(environ=NO_ECS, home=str(home)).get_credentials()
    message = str(caught.value)
    assert f"loading profile 'odd' from {path} failed" in message
    assert SECRET not in message


@pytest.mark.asyncio
async def test_credentials_file_env_var_pointing_nowhere_is_an_error(home: Path) -> None:
    env = {"ALIBABA_CLOUD_CREDENTIALS_FILE": str(home / "missing.ini"), **NO_ECS}
    with pytest.raises(CredentialsError, match="does not exist"):
        await DefaultCredentials(environ=env, home=str(home)).get_credentials()


@pytest.mark.asyncio
async def test_the_chain_is_walked_once_then_cached(home: Path) -> None:
    path = write_cli_config(home, CLI_CONFIG)
    provider = DefaultCredentials(environ=NO_ECS, home=str(home))
    first = await provider.get_credentials()
    path.unlink()
    assert await provider.get_credentials() is first


# --- caching and refresh ---------------------------------------------------------------------


class FakeSource:
    """Hands out numbered STS credentials; ``gate`` holds each fetch until set."""

    def __init__(self, clock: FakeClock, lifetime: float | None = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.fetches = 0
        self.gate: anyio.Event | None = None
        self.fail = False

    async def get_credentials(self) -> Credentials:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise CredentialsError("STS said no")
        expiration = None
        if self.lifetime is not None:
            expiration = self.clock.wall().timestamp() + self.lifetime
        return Credentials(f"STS.id-{self.fetches:04d}", SECRET, TOKEN, expiration, provider="fake")


async def gather_credentials(provider: RefreshingCredentials, callers: int) -> list[Credentials]:
    results: list[Credentials] = []

    async def call() -> None:
        results.append(await provider.get_credentials())

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(call)
    return results


@pytest.mark.asyncio
async def test_many_concurrent_callers_share_one_fetch() -> None:
    clock = FakeClock()
    source = FakeSource(clock)
    source.gate = anyio.Event()
    provider = RefreshingCredentials(source, clock=clock)

    async def release() -> None:
        await anyio.wait_all_tasks_blocked()
        assert source.gate is not None
        source.gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        results = await gather_credentials(provider, 50)
    assert source.fetches == 1
    assert {c.access_key_id for c in results} == {"STS.id-0001"}


@pytest.mark.asyncio
async def test_temporary_credentials_are_refreshed_a_margin_before_expiry() -> None:
    clock = FakeClock()
    source = FakeSource(clock, lifetime=3600.0)
    provider = RefreshingCredentials(source, clock=clock, refresh_margin=180.0)
    first = await provider.get_credentials()
    assert first.expiration == EPOCH.timestamp() + 3600.0

    clock.advance(3600.0 - 180.0 - 1.0)  # one second before the margin: still cached
    assert await provider.get_credentials() is first
    assert source.fetches == 1

    clock.advance(1.0)  # inside the margin: exactly one refresh for everyone
    results = await gather_credentials(provider, 20)
    assert source.fetches == 2
    assert {c.access_key_id for c in results} == {"STS.id-0002"}


@pytest.mark.asyncio
async def test_credentials_shorter_lived_than_the_margin_are_not_refetched_by_every_caller() -> None:
    clock = FakeClock()
    source = FakeSource(clock, lifetime=60.0)
    provider = RefreshingCredentials(source, clock=clock, refresh_margin=180.0)
    results = await gather_credentials(provider, 20)
    assert source.fetches == 1
    assert {c.access_key_id for c in results} == {"STS.id-0001"}
    clock.advance(10.0)
    await gather_credentials(provider, 20)
    assert source.fetches == 2


@pytest.mark.asyncio
async def test_long_lived_keys_are_fetched_once() -> None:
    clock = FakeClock()
    calls = 0

    class Source:
        async def get_credentials(self) -> Credentials:
            nonlocal calls
            calls += 1
            return Credentials(AK_ID, SECRET)

    provider = RefreshingCredentials(Source(), clock=clock)
    await provider.get_credentials()
    clock.advance(10 * 86400)
    await provider.get_credentials()
    assert calls == 1


@pytest.mark.asyncio
async def test_tokens_with_unknown_expiry_are_rechecked_periodically() -> None:
    clock = FakeClock()
    source = FakeSource(clock, lifetime=None)
    provider = RefreshingCredentials(source, clock=clock, recheck_interval=300.0)
    await provider.get_credentials()
    clock.advance(299.0)
    await provider.get_credentials()
    assert source.fetches == 1
    clock.advance(1.0)
    await provider.get_credentials()
    assert source.fetches == 2


@pytest.mark.asyncio
async def test_a_failed_refresh_keeps_valid_credentials_then_raises_once_expired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    source = FakeSource(clock, lifetime=3600.0)
    provider = RefreshingCredentials(source, clock=clock, refresh_margin=180.0)
    first = await provider.get_credentials()

    clock.advance(3600.0 - 60.0)
    source.fail = True
    with caplog.at_level(logging.DEBUG):
        assert await provider.get_credentials() is first  # still valid for a minute
    assert source.fetches == 2
    assert await provider.get_credentials() is first  # no retry during the back-off
    assert source.fetches == 2

    clock.advance(60.0)  # now expired
    with pytest.raises(CredentialsError):
        await provider.get_credentials()
    assert "refreshing credentials failed" in caplog.text


# --- secrets never show ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_secret_in_any_repr_message_or_log_record(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    write_cli_config(home, CLI_CONFIG)
    texts: list[str] = []

    provider = DefaultCredentials("prod", environ=NO_ECS, home=str(home))
    creds = await provider.get_credentials()
    texts += [repr(provider), str(provider), repr(creds), str(creds)]
    texts.append(repr(RefreshingCredentials(StaticCredentials(AK_ID, SECRET, TOKEN))))

    for bad_env in (
        {"ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN},
        {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_SECURITY_TOKEN": TOKEN},
    ):
        with pytest.raises(CredentialsError) as caught:
            await DefaultCredentials(environ={**bad_env, **NO_ECS}, home=str(home)).get_credentials()
        texts += [str(caught.value), repr(caught.value)]

    clock = FakeClock()
    source = FakeSource(clock)
    refreshing = RefreshingCredentials(source, clock=clock)
    await refreshing.get_credentials()
    clock.advance(3500.0)
    source.fail = True
    await refreshing.get_credentials()  # logs a warning

    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records, "expected some log records to check"
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
