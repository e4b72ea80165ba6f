"""Request parameters: encoding, validation and decoding, shared by the client and the simulator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.eas import params
from scanner.eas.params import InstanceQuery, Paging, ServiceQuery
from scanner.eas.signing import percent_encode
from scanner.errors import ConfigError


def test_the_field_lists_match_the_sdk_models() -> None:
    assert len(params.INSTANCE_FIELDS) == 26
    assert len(set(params.INSTANCE_FIELDS)) == 26
    assert len(params.SERVICE_FIELDS) == 46
    assert len(set(params.SERVICE_FIELDS)) == 46


def test_every_list_service_instances_parameter_encodes() -> None:
    query = InstanceQuery(
        filter="10.0", resource_type="PublicResource", instance_type="ecs.c7.large",
        instance_status="Running", instance_ip="10.224.0.1", instance_name="foo-bdc5-8l7rk",
        host_ip="10.224.0.2", is_spot=False, role="Queue", sort="StartTime", order="desc",
    )  # fmt: skip
    assert query.to_params() == {
        "Filter": "10.0", "ResourceType": "PublicResource", "InstanceType": "ecs.c7.large",
        "InstanceStatus": "Running", "InstanceIP": "10.224.0.1", "InstanceName": "foo-bdc5-8l7rk",
        "HostIP": "10.224.0.2", "IsSpot": "false", "Role": "Queue", "Sort": "StartTime",
        "Order": "desc",
    }  # fmt: skip
    assert InstanceQuery.from_params(query.to_params()) == query


def test_enums_accept_members_and_values() -> None:
    a = InstanceQuery(role=params.Role.SDPROXY, order=params.Order.ASC)
    b = InstanceQuery(role="SDProxy", order="asc")
    assert a.to_params() == b.to_params() == {"Role": "SDProxy", "Order": "asc"}


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"resource_type": "Public"}, ["ResourceType", "PublicResource", "DedicatedResource"]),
        ({"role": "standard"}, ["Role", "Standard"]),
        ({"order": "ascending"}, ["Order", "asc", "desc"]),
        ({"sort": "CreateTime"}, ["Sort", "StartTime"]),
        ({"is_spot": "yes"}, ["IsSpot", "boolean"]),
        ({"filter": 3}, ["Filter", "string"]),
    ],
)
def test_invalid_values_name_the_parameter_and_what_is_allowed(
    kwargs: dict[str, object], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        InstanceQuery(**kwargs)  # type: ignore[arg-type]
    for name in names:
        assert name in str(caught.value)


@pytest.mark.parametrize("raw", ["true", "false", "True", "False", "TRUE"])
def test_is_spot_accepts_what_our_client_and_the_sdk_send(raw: str) -> None:
    assert InstanceQuery.from_params({"IsSpot": raw}).is_spot is (raw.lower() == "true")


def test_is_spot_rejects_anything_else() -> None:
    with pytest.raises(ConfigError, match="IsSpot"):
        InstanceQuery.from_params({"IsSpot": "1"})


def test_list_services_label_is_one_compact_json_value() -> None:
    query = ServiceQuery(label={"env": "prod", "k 2": "v/é"}, service_status="Running")
    encoded = query.to_params()
    assert encoded["Label"] == '{"env":"prod","k 2":"v/é"}'
    assert ServiceQuery.from_params(encoded) == query
    assert hash(query) == hash(ServiceQuery.from_params(encoded))


def test_list_services_rejects_a_label_that_is_not_an_object() -> None:
    with pytest.raises(ConfigError, match="Label"):
        ServiceQuery.from_params({"Label": "[1]"})
    with pytest.raises(ConfigError, match="Label"):
        ServiceQuery(label={"a": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(("number", "size"), [(0, 10), (1, 0), (-1, 5), (True, 5)])
def test_paging_must_be_positive_integers(number: int, size: int) -> None:
    with pytest.raises(ConfigError):
        Paging(number, size)


def test_parse_paging_defaults_and_errors() -> None:
    assert params.parse_paging({}) == Paging(1, 100)
    assert params.parse_paging({"PageNumber": "3", "PageSize": "500"}) == Paging(3, 500)
    with pytest.raises(ConfigError, match="PageSize"):
        params.parse_paging({"PageSize": "ten"})


def test_paths_are_escaped_like_the_sdk() -> None:
    assert (
        params.service_instances_path("cn-shanghai", "svc name/x~y*é")
        == "/api/v2/services/cn-shanghai/svc%20name%2Fx~y%2A%C3%A9/instances"
    )


@given(st.text())
def test_path_segment_encoding_matches_quote(text: str) -> None:
    from urllib.parse import quote

    assert percent_encode(text) == quote(text, safe="~")


@given(st.text(min_size=1), st.text(min_size=1))
def test_a_built_path_parses_back_to_its_operation(cluster_id: str, service_name: str) -> None:
    parsed = params.parse_path(params.service_instances_path(cluster_id, service_name))
    assert parsed == params.ApiPath(params.Action.LIST_SERVICE_INSTANCES, cluster_id, service_name)


def test_the_fixed_paths_parse_and_others_do_not() -> None:
    assert params.parse_path(params.regions_path()) == params.ApiPath(params.Action.DESCRIBE_REGIONS)
    assert params.parse_path(params.services_path()) == params.ApiPath(params.Action.LIST_SERVICES)
    for path in ("/", "/api/v2/services/", "/api/v2/services/a/instances", "/api/v2/services/a/b/c/instances",
                 "/api/v2/services/a/b/instance", "/api/v1/services/a/b/instances"):  # fmt: skip
        assert params.parse_path(path) is None, path
