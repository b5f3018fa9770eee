"""budrt.money: exact amounts — decimal strings in, integers inside, decimal strings out; the one
cost formula."""

from __future__ import annotations

import pytest

from budrt.money import MoneyError, Price, format_micros, format_nanos, parse_micros, parse_nanos


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("", 0),
        ("0", 0),
        ("0.15", 150_000),
        ("2.5", 2_500_000),
        ("0.000001", 1),
        (" 10 ", 10_000_000),
        ("1000000000", 10**15),
    ],
)
def test_parse_micros(text: str, micros: int) -> None:
    assert parse_micros(text) == micros


@pytest.mark.parametrize(
    "text", ["-1", "0.0000001", "abc", "1e3", "NaN", "Infinity", "1000000000.000001", "0x10"]
)
def test_parse_micros_refuses(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_micros(text)


def test_formatting_is_exact() -> None:
    assert [format_micros(m) for m in (0, 1, 150_000, 2_500_000, 10**15)] == [
        "0",
        "0.000001",
        "0.15",
        "2.5",
        "1000000000",
    ]
    assert [format_nanos(n) for n in (0, 1, 123_450, 3 * 10**9 + 7, -5)] == [
        "0.000000000",
        "0.000000001",
        "0.000123450",
        "3.000000007",
        "-0.000000005",
    ]
    assert (
        parse_nanos("0.000000001") == 1
        and parse_nanos("") == 0
        and parse_nanos("1.0000000005") == 1_000_000_001
    )


def test_cost_is_integer_exact_and_rounds_once_half_up() -> None:
    price = Price(input_micros_per_million=150_000, output_micros_per_million=600_000, request_micros=2)
    # 1000 x $0.15/M + 500 x $0.60/M = $0.00045 = 450000 nano-dollars, plus $0.000002
    assert price.cost_nanos(1000, 500) == 452_000
    assert price.cost_nanos(1000, 500, per_request=False) == 450_000
    # A token at $0.0015/M is 1.5 nano-dollars: one token rounds up to 2, two are exactly 3.
    tiny = Price(input_micros_per_million=1_500)
    assert (tiny.cost_nanos(1, 0), tiny.cost_nanos(2, 0)) == (2, 3)
    # 100000 requests of $0.10 sum to exactly $10000 (floats would drift: 0.1 is inexact).
    cents = Price(request_micros=100_000)
    assert sum(cents.cost_nanos(0, 0) for _ in range(100_000)) == 10_000 * 10**9
    assert Price().free and not cents.free
