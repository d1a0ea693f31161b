"""v0.4 benchmark dicts: ``{HEPscore23: 15.3, hepspec: 11.4}`` → ``("hepscore23", 15.3)``.

v0.4 messages carry the benchmark inside the value instead of a separate
``ServiceLevelType`` line; this module picks the one benchmark
a record is accounted in, by the priority the existing server uses.
"""

from __future__ import annotations

import math

from apel.records.quote import quote

# Highest priority first.
BENCHMARK_PRIORITY = ("hepscore23", "hepspec", "si2k")

# ServiceLevelType values a job record may carry (checked case-insensitively).
VALID_SERVICE_LEVEL_TYPES = frozenset(BENCHMARK_PRIORITY)

NO_VALID_BENCHMARK = "No valid benchmark type found"
MIXTURE = "Mixture of benchmark types detected"


def parse_benchmark_dict(value: str) -> tuple[str, str]:
    """Return the chosen (lower-case type, value text); raise ValueError with the reason.

    Keys are lower-cased and must be unique; each value must be a finite number;
    keys that are not benchmarks are ignored unless no benchmark key is present.
    The value comes back as text so the field's own converter decides its type:
    integer durations above 2**53 must not pass through a float.
    """
    if not (value.startswith("{") and value.endswith("}")):
        raise ValueError(f"value {quote(value)} is not a benchmark dict such as {{hepscore23: 15.3}}")
    items: dict[str, str] = {}
    body = value.strip("{}").strip()
    for item in body.split(",") if body else ():
        parts = item.split(":")
        if len(parts) != 2:
            raise ValueError(f"benchmark dict item {quote(item.strip())} is not 'key: value'")
        key = parts[0].strip().lower()
        if key in items:
            raise ValueError(f"duplicate benchmark key {quote(key)} in {quote(value)}")
        number = parts[1].strip()
        try:
            finite = math.isfinite(float(number))
        except ValueError:
            raise ValueError(f"Invalid float value {quote(number)} for benchmark {quote(key)}") from None
        if not finite:
            raise ValueError(f"benchmark {quote(key)} value {quote(number)} is not a finite number")
        items[key] = number
    for key in BENCHMARK_PRIORITY:
        if key in items:
            return key, items[key]
    raise ValueError(
        f"{NO_VALID_BENCHMARK} in {quote(value)} (expected one of {', '.join(BENCHMARK_PRIORITY)})")
