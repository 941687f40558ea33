"""The validators of every money field: an amount, in range, to the cent — each refusal a message beside the field,
never a 500 (``1e309``, forty nines and ``sNaN`` all parse as decimals)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from wtforms.validators import InputRequired, StopValidation

MAX_AMOUNT = Decimal("99999")  # NZD per licence; the columns hold 12 digits, 2 after the point


def an_amount(form, field):
    """``NaN``, ``sNaN`` and ``Infinity`` parse as decimals: refuse them before any arithmetic trips on them."""
    if field.data is not None and not field.data.is_finite():
        raise StopValidation("Enter an amount such as 5.50.")


def within(minimum: Decimal, maximum: Decimal):
    message = f"Use an amount from {minimum:,} to {maximum:,}."

    def check(form, field):
        # Compared before any quantize: 1e309 has more digits than the decimal context rounds to the cent.
        if field.data is not None and not minimum <= field.data <= maximum:
            raise StopValidation(message)

    return check


def whole_cents(form, field):
    """Prices are NZD to the cent: 5.50 yes, 5.555 no (the database would round it silently)."""
    if field.data is None:
        return
    try:
        exact = field.data == field.data.quantize(Decimal("0.01"))
    except InvalidOperation:
        exact = False
    if not exact:
        raise StopValidation("Use dollars and cents: at most 2 decimal places.")


def money_validators(label: str, minimum: Decimal = Decimal("0"), maximum: Decimal = MAX_AMOUNT) -> list:
    return [InputRequired(message=f"{label} is required."), an_amount, within(minimum, maximum), whole_cents]
