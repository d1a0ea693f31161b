"""How a reject reason shows a value taken from a message.

A reason is read by an operator, logged, and stored beside every rejected message; one
that echoes a 10,000-character value whole is unreadable and as large as the message
itself. Every place that puts message input into a reason goes through :func:`quote`,
so a reason stays short whatever a site sends: a long value is shown by its start and
its length, which is enough to find it in the stored message.
"""

from __future__ import annotations

# Characters of a value a reason shows (quotes and escapes aside for repr forms).
QUOTE_LIMIT = 80
ELLIPSIS = "\u2026"
# Python refuses to print integers of more than 4,300 digits; such a value only ever needs its size.
_HUGE_BITS = 4096
_DIGITS_PER_BIT = 0.30103  # log10(2)


def quote(value: object, bare: bool = False, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` (or ``str`` with ``bare``), cut to about ``limit`` characters.

    A cut value ends in an ellipsis and is followed by its original length:
    ``'aaaa…' (10000 characters)``. Escapes count towards the limit, so a value of
    control characters is cut as short as a printable one.
    """
    if isinstance(value, int) and value.bit_length() > _HUGE_BITS:  # repr() would refuse it
        return f"an integer of about {int(value.bit_length() * _DIGITS_PER_BIT)} digits"
    if not isinstance(value, str):
        text = repr(value)
        if len(text) <= limit:
            return text
        return f"{text[:limit]}{ELLIPSIS} ({len(text)} characters)"
    if bare:
        if len(value) <= limit:
            return value
        return f"{value[:limit]}{ELLIPSIS} ({len(value)} characters)"
    shown = repr(value)
    if len(shown) <= limit + 2:
        return shown
    prefix = value[:limit]
    while len(repr(prefix)) > limit + 2:
        prefix = prefix[:-1]
    return f"{prefix + ELLIPSIS!r} ({len(value)} characters)"
