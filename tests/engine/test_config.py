"""The engine's knobs refuse values that cannot work, naming the field."""

from __future__ import annotations

import pytest

from scanner.engine.config import Concurrency
from scanner.errors import ConfigError

CONCURRENCY_FIELDS = (
    "total",
    "per_region",
    "pages_per_listing",
    "services_per_region",
    "long_listings_per_region",
    "long_listings",
)


@pytest.mark.parametrize("field", CONCURRENCY_FIELDS)
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_concurrency_bounds_must_be_positive_integers(field: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=f"Concurrency.{field} must be a positive"):
        Concurrency(**{field: bad})  # type: ignore[arg-type]  # the wrong type is the point


def test_every_concurrency_field_is_checked() -> None:
    assert set(CONCURRENCY_FIELDS) == set(Concurrency.__dataclass_fields__)
