"""The one positive-value check behind the transport's, the Scanner's and the API parameters' own."""

from __future__ import annotations

import math

import pytest

from scanner.errors import ConfigError
from scanner.validation import require_positive


@pytest.mark.parametrize("value", [1, 0.5, 10**12, math.inf])
def test_positive_numbers_pass(value: float) -> None:
    require_positive("x", value)


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, True, False, None, "3", [1]])
def test_anything_else_is_a_config_error_naming_the_value(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^x must be a positive number, got "):
        require_positive("x", value)


@pytest.mark.parametrize("value", [2.0, 2.5, True, 0, "2"])
def test_integer_wants_an_int(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^n must be a positive integer, got "):
        require_positive("n", value, integer=True)
    require_positive("n", 2, integer=True)


def test_finite_refuses_infinity() -> None:
    with pytest.raises(ConfigError, match=r"^x must be finite, got inf$"):
        require_positive("x", math.inf, finite=True)
