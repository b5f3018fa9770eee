"""Exact money arithmetic for prices, costs and budgets.

Amounts are integers, never floats: prices and budget limits in **micro-dollars** (1e-6 USD),
request costs and sums of them in **nano-dollars** (1e-9 USD), so that the cost of one token at
any price with six decimals per million tokens is an exact integer count up to a thousandth, and
rounding (half up, once per request) loses at most half a nano-dollar per request. On the wire
amounts are decimal strings (`"0.15"`), read and written with :class:`decimal.Decimal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
NANOS_PER_USD = 1_000_000_000
NANOS_PER_MICRO = 1_000
TOKENS_PER_PRICE = 1_000_000  # prices are per million tokens
# The largest amount a price or budget may name, in US dollars.
MAX_USD = Decimal(1_000_000_000)


class MoneyError(ValueError):
    """A decimal string that is not an amount this platform accepts."""


def parse_micros(text: str, *, max_usd: Decimal = MAX_USD) -> int:
    """Micro-dollars of a decimal US-dollar string ("0.15" -> 150000; "" -> 0). Refuses
    negatives, more than 6 decimal places, exponents, NaN and amounts above `max_usd`."""
    text = text.strip()
    if not text:
        return 0
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"{text!r} is not a decimal amount of US dollars") from None
    if not value.is_finite() or "e" in text.lower():
        raise MoneyError(f"{text!r} is not a plain decimal amount of US dollars")
    if value < 0:
        raise MoneyError(f"{text!r} is negative")
    if value > max_usd:
        raise MoneyError(f"{text!r} is above {max_usd} US dollars")
    micros = value * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise MoneyError(f"{text!r} has more than 6 decimal places")
    return int(micros)


def format_micros(micros: int) -> str:
    """The shortest decimal string of micro-dollars (150000 -> "0.15", 0 -> "0")."""
    value = Decimal(micros) / MICROS_PER_USD
    text = format(value.normalize(), "f")
    return text


def format_nanos(nanos: int) -> str:
    """Nano-dollars as a decimal string with 9 places (123450 -> "0.000123450"); integer
    arithmetic only (it runs once per request on the gateway)."""
    sign = "-" if nanos < 0 else ""
    whole, fraction = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{fraction:09d}"


def parse_nanos(text: str) -> int:
    """Nano-dollars of a decimal string ("" -> 0); rounded half up past 9 places."""
    text = text.strip()
    if not text:
        return 0
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"{text!r} is not a decimal amount of US dollars") from None
    if not value.is_finite():
        raise MoneyError(f"{text!r} is not a decimal amount of US dollars")
    return int((value * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Price:
    """A deployment's prices in micro-dollars: per million input and output tokens, per request,
    per generated image."""

    input_micros_per_million: int = 0
    output_micros_per_million: int = 0
    request_micros: int = 0
    image_micros: int = 0

    @property
    def free(self) -> bool:
        """Whether nothing is charged at all."""
        return not (
            self.input_micros_per_million
            or self.output_micros_per_million
            or self.request_micros
            or self.image_micros
        )

    def cost_nanos(
        self, prompt_tokens: int, completion_tokens: int, *, per_request: bool = True, images: int = 0
    ) -> int:
        """The cost in nano-dollars of one request: its tokens at the per-million prices
        (rounded half up to a nano-dollar), plus, when `per_request` (a successful call), the
        per-request price and its `images` at the per-image price."""
        # micros per million tokens * tokens = micro-dollars * 1e6 = nano-dollars * 1e3
        scaled = (
            prompt_tokens * self.input_micros_per_million + completion_tokens * self.output_micros_per_million
        )
        tokens = (scaled + 500) // 1000
        return tokens + (
            (self.request_micros + images * self.image_micros) * NANOS_PER_MICRO if per_request else 0
        )
