"""The pre-computed signer agrees with the reference ``signing.sign`` byte for byte, always."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.client.api import _split_query
from scanner.client.credentials import Credentials
from scanner.client.signer import RequestSigner, _hmac_states
from scanner.eas import signing
from scanner.eas.params import (
    InstanceQuery,
    InstanceSort,
    Order,
    ResourceType,
    Role,
    ServiceQuery,
    ServiceStatus,
    ServiceType,
)
from scanner.eas.signing import percent_encode

header_text = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)  # printable ASCII, as header values must be
any_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=30)


@st.composite
def credentials(draw: st.DrawFn) -> Credentials:
    token = draw(st.none() | header_text)
    return Credentials(draw(header_text), draw(any_text.filter(bool)), token)


@settings(max_examples=300)
@given(
    host=header_text,
    action=st.sampled_from(["ListServices", "ListServiceInstances", "DescribeRegions"]),
    user_agent=header_text,
    creds=credentials(),
    segments=st.lists(any_text.filter(bool), min_size=1, max_size=3),
    params=st.dictionaries(st.from_regex(r"[A-Z][A-Za-z]{0,12}", fullmatch=True), any_text, max_size=6),
    date=st.from_regex(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z", fullmatch=True),
    nonce=st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
)
def test_request_signer_matches_the_reference_signer(
    host: str,
    action: str,
    user_agent: str,
    creds: Credentials,
    segments: list[str],
    params: dict[str, str],
    date: str,
    nonce: str,
) -> None:
    path = "/api/v2/" + "/".join(percent_encode(s) for s in segments)
    query = signing.canonical_query(params)
    headers = RequestSigner(host=host, action=action, user_agent=user_agent, credentials=creds).sign(
        path, query, date, nonce
    )
    unsigned = {name: value for name, value in headers.items() if name != "Authorization"}
    expected = signing.sign(
        method="GET",
        canonical_uri=path,
        params=params,
        headers=unsigned,
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
    )
    assert headers["Authorization"] == expected
    assert unsigned["x-acs-date"] == date
    assert unsigned["x-acs-signature-nonce"] == nonce
    assert ("x-acs-security-token" in unsigned) is (creds.security_token is not None)


@given(key=st.binary(max_size=200), message=st.binary(max_size=200))
def test_hmac_states_give_the_standard_hmac(key: bytes, message: bytes) -> None:
    inner, outer = _hmac_states(key)
    inner.update(message)
    outer.update(inner.digest())
    assert outer.hexdigest() == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_signer_repr_shows_no_secret() -> None:
    signer = RequestSigner(
        host="h",
        action="ListServices",
        user_agent="ua",
        credentials=Credentials("id", "sekrit-value", "tok-en"),
    )
    assert "sekrit" not in repr(signer)
    assert "tok-en" not in repr(signer)


maybe = st.none() | any_text


@given(
    query=st.builds(
        InstanceQuery,
        filter=maybe,
        resource_type=st.none() | st.sampled_from(ResourceType),
        instance_type=maybe,
        instance_status=maybe,
        instance_ip=maybe,
        instance_name=maybe,
        host_ip=maybe,
        is_spot=st.none() | st.booleans(),
        role=st.none() | st.sampled_from(Role),
        sort=st.none() | st.sampled_from(InstanceSort),
        order=st.none() | st.sampled_from(Order),
    )
    | st.builds(
        ServiceQuery,
        filter=maybe,
        gateway=maybe,
        group_name=maybe,
        label=st.none() | st.dictionaries(any_text, any_text, max_size=3),
        order=st.none() | st.sampled_from(Order),
        parent_service_uid=maybe,
        quota_id=maybe,
        resource_name=maybe,
        resource_type=maybe,
        role=maybe,
        service_name=maybe,
        service_status=st.none() | st.sampled_from(ServiceStatus),
        service_type=st.none() | st.sampled_from(ServiceType),
        service_uid=maybe,
        sort=maybe,
        workspace_id=maybe,
    ),
    page_number=st.integers(1, 10**6),
    page_size=st.integers(1, 100),
)
def test_cached_query_halves_around_paging_equal_the_canonical_query(
    query: InstanceQuery | ServiceQuery, page_number: int, page_size: int
) -> None:
    params = query.to_params()
    before, after = _split_query(params)
    paging = {"PageNumber": str(page_number), "PageSize": str(page_size)}
    assert f"{before}PageNumber={page_number}&PageSize={page_size}{after}" == signing.canonical_query(
        {**params, **paging}
    )
