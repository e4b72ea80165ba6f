"""The throughput scenario's bookkeeping: rounds in alternating order, and CPU compared per round."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.throughput import PAIR_ROUNDS, SDK_ROUNDS, round_order, summarize


def test_the_pair_runs_back_to_back_in_alternating_order_and_the_sdk_after_it() -> None:
    orders = [round_order(i, sdk=i < SDK_ROUNDS) for i in range(PAIR_ROUNDS)]
    assert orders[0] == ("floor_aiohttp", "scanner", "sdk_async")
    assert orders[1] == ("scanner", "floor_aiohttp", "sdk_async")
    assert [order[:2] for order in orders[2:4]] == [orders[0][:2], orders[1][:2]]
    sdk_after = [("sdk_async",)] * SDK_ROUNDS + [()] * (PAIR_ROUNDS - SDK_ROUNDS)
    assert [order[2:] for order in orders] == sdk_after
    assert PAIR_ROUNDS % 2 == 1  # the median is one round's ratio


def _run(cpu_s: float, wall_s: float, *, records: int = 1_000, exact: bool | None = True) -> dict[str, Any]:
    return {
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "records": records,
        "cpu_us_per_record": round(cpu_s / records * 1e6, 2),
        "exact": exact,
    }


def test_the_ratio_is_paired_per_round_and_its_median_ignores_an_outlier_round() -> None:
    # The floor's third round is a lucky one: its least CPU would make the scanner look 2x.
    scanner = [_run(0.013, 2.0), _run(0.016, 2.5), _run(0.013, 2.1)]
    floor = [_run(0.010, 1.0), _run(0.009, 1.1), _run(0.0054, 0.9, exact=None)]
    floor[0]["orjson_cpu_us_per_record"] = 2.8
    result = summarize({"scanner": scanner, "floor_aiohttp": floor})

    assert result["cpu_ratio_vs_floor_rounds"] == [1.3, pytest.approx(1.778, abs=1e-3), 2.407]
    assert result["cpu_ratio_vs_floor_median"] == pytest.approx(1.778, abs=1e-3)
    # The existing keys keep their meaning: the fastest round, the least CPU, every round listed.
    assert result["scanner"]["wall_s"] == 2.0
    assert result["scanner"]["cpu_us_per_record"] == 13.0
    assert result["scanner"]["cpu_us_per_record_rounds"] == [13.0, 16.0, 13.0]
    assert result["scanner"]["cpu_us_per_record_median"] == 13.0
    assert result["floor_aiohttp"]["cpu_us_per_record"] == 5.4
    assert result["floor_aiohttp"]["wall_s_rounds"] == [1.0, 1.1, 0.9]
    assert result["orjson_cpu_us_per_record"] == 2.8
    assert "orjson_cpu_us_per_record" not in result["floor_aiohttp"]
    assert list(result).index("scanner") < list(result).index("floor_aiohttp")


def test_one_inexact_scanner_round_makes_the_entry_inexact() -> None:
    scanner = [_run(0.013, 2.0), _run(0.013, 2.5, exact=False)]
    floor = [_run(0.010, 1.0, exact=None), _run(0.010, 1.0, exact=None)]
    assert summarize({"scanner": scanner, "floor_aiohttp": floor})["scanner"]["exact"] is False
