"""The accounts file: the issue's example, defaults, and errors that name the file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.errors import ConfigError
from scanner.org.accounts import AccountTarget, load_accounts_file, parse_accounts, select_members
from scanner.org.resourcemanager import DirectoryAccount

EXAMPLE = """\
[defaults]                 # all optional
role_name = "EasInventoryReader"
external_id = "shared-ext-id"
regions = ["cn-hangzhou", "cn-shanghai"]

[[account]]
id = "1234567890123456"    # required
name = "prod"              # optional
role_arn = "acs:ram::1234567890123456:role/Other"   # optional; else from role_name
external_id = "own-ext-id" # optional
regions = ["cn-beijing"]   # optional

[[account]]
id = "2234567890123456"
"""


def test_the_issue_example(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(EXAMPLE)
    parsed = load_accounts_file(path)
    assert parsed.source == str(path)
    assert (parsed.role_name, parsed.external_id, parsed.regions) == (
        "EasInventoryReader", "shared-ext-id", ("cn-hangzhou", "cn-shanghai"),
    )  # fmt: skip
    assert [spec.line for spec in parsed.accounts] == [6, 13]
    assert parsed.targets() == (
        AccountTarget(
            account_id="1234567890123456",
            role_arn="acs:ram::1234567890123456:role/Other",
            name="prod",
            external_id="own-ext-id",
            regions=("cn-beijing",),
        ),
        AccountTarget(
            account_id="2234567890123456",
            role_arn="acs:ram::2234567890123456:role/EasInventoryReader",
            external_id="shared-ext-id",
            regions=("cn-hangzhou", "cn-shanghai"),
        ),
    )
    assert "shared-ext-id" not in repr(parsed.targets()) + repr(parsed.accounts)


def test_without_defaults_the_arguments_then_the_conventional_role_apply() -> None:
    parsed = parse_accounts('[[account]]\nid = "1"\n')
    (target,) = parsed.targets()
    assert target.role_arn == "acs:ram::1:role/ResourceDirectoryAccountAccessRole"
    assert (target.external_id, target.regions, target.name) == (None, None, None)
    (target,) = parsed.targets(role_name="FromFlag", external_id="flag-ext")
    assert target.role_arn == "acs:ram::1:role/FromFlag"
    assert target.external_id == "flag-ext"
    # The file's [defaults] win over the arguments.
    (target,) = parse_accounts('[defaults]\nrole_name = "FromFile"\n[[account]]\nid = "1"\n').targets(
        role_name="FromFlag"
    )
    assert target.role_arn == "acs:ram::1:role/FromFile"


ERRORS = [
    # (file text, line, fragments of the message)
    ('[[account]]\nid = "1"\nname = "a\n', 3, ["not valid TOML", "Fix the syntax"]),
    ('[[account]]\nid = "1"\nid = "2"\n', 3, ["not valid TOML"]),
    ('[defaults]\nrole_nme = "x"\n[[account]]\nid = "1"\n', 2, ["unknown key 'role_nme' in [defaults]",
                                                             "did you mean 'role_name'?"]),
    ('[[account]]\nid = "1"\n\n[[account]]\nid = "2"\nregion = ["cn-beijing"]\n', 6,
     ["unknown key 'region' in [[account]]", "did you mean 'regions'?", "Valid keys: external_id, id, name"]),
    ('[default]\nrole_name = "x"\n', 1, ["unknown key 'default'", "did you mean 'defaults'?"]),
    ('[[account]]\nid = "1"\n[[account]]\nname = "x"\n[[account]]\nid = "1"\n', 3,
     ["[[account]] number 2 has no id", 'id = "1234567890123456"']),
    ('[[account]]\nid = "1"\n[[account]]\nid = "2"\n[[account]]\nid = "1"\n', 6,
     ["account 1 is listed twice (first on line 2)", "Remove one of the two"]),
    ('[[account]]\nid = 1234567890123456\n', 2, ["id must be a string", 'id = "1234567890123456"']),
    ('[[account]]\nid = "12ab"\n', 2, ["invalid account id '12ab'"]),
    ('[[account]]\nid = "1"\nrole_arn = "acs:ram::2:role/R"\n', 3, ["role of account 2, not of 1"]),
    ('[[account]]\nid = "1"\nrole_arn = "arn:aws:iam::1:role/R"\n', 3, ["invalid role ARN"]),
    ('[[account]]\nid = "1"\nregions = "cn-beijing"\n', 3,
     ["regions must be a non-empty list", 'regions = ["']),
    ('[[account]]\nid = "1"\nregions = ["Beijing"]\n', 3, ["invalid region id 'Beijing'"]),
    ('[[account]]\nid = "1"\nregions = ["cn-beijing", "cn-beijing"]\n', 3, ["a region twice"]),
    ('[[account]]\nid = "1"\nname = 5\n', 3, ["name must be a non-empty string, got a number (5)"]),
    ('[defaults]\nrole_name = "bad/name"\n[[account]]\nid = "1"\n', 2, ["invalid role name"]),
    ('[defaults]\nexternal_id = "x"\n[[account]]\nid = "1"\n', 2, ["invalid external id"]),
    ('[defaults]\nregions = ["cn-beijing"]\n', None, ["no [[account]] table", "Add one per account"]),
    ('account = "x"\n', 1, ["account must be an array of tables", "[[account]] (two brackets)"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "fragments"), ERRORS)
def test_errors_name_the_file_line_and_fix(text: str, line: int | None, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_accounts(text, source="org/accounts.toml")
    message = str(caught.value)
    where = f"org/accounts.toml, line {line}: " if line else "org/accounts.toml: "
    assert message.startswith(where), message
    for fragment in fragments:
        assert fragment in message, message


def test_an_external_id_is_never_echoed_in_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_accounts('[[account]]\nid = "1"\nexternal_id = "secret with spaces"\n')
    assert "secret with spaces" not in str(caught.value)


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_accounts_file(tmp_path / "missing.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[[account]]\nid = "1"\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1.toml, line 3: not UTF-8"):
        load_accounts_file(bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_accounts_file(tmp_path)


def test_selecting_members_to_scan() -> None:
    members = [
        DirectoryAccount("11", "one", status="CreateSuccess"),
        DirectoryAccount("22", "two", status="PromoteVerifying"),
        DirectoryAccount("33", "", status="InviteSuccess"),
        DirectoryAccount("44", "four", status="PromoteSuccess"),
    ]
    every = select_members(members, external_id="ext-id")
    assert [(t.account_id, t.name, t.external_id) for t in every.targets] == [
        ("11", "one", "ext-id"), ("33", None, "ext-id"), ("44", "four", "ext-id"),
    ]  # fmt: skip
    assert every.targets[0].role_arn == "acs:ram::11:role/ResourceDirectoryAccountAccessRole"
    assert [a.account_id for a in every.skipped] == ["22"]
    some = select_members(members, include=["11", "22", "99", "44"], exclude=["44"])
    assert [t.account_id for t in some.targets] == ["11"]
    assert [a.account_id for a in some.skipped] == ["22"]
    assert (some.excluded, some.missing) == (("44",), ("99",))
    with pytest.raises(ConfigError, match="excluded account id 'x'"):
        select_members(members, exclude=["x"])
    with pytest.raises(ConfigError, match="role name"):
        select_members(members, role_name="a b")
