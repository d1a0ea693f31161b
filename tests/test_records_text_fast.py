"""The bulk reader of canonical text messages agrees with the exact record-by-record path.

``apel.records.text_fast`` may decline a message (None: the exact path then reads it),
but whatever it returns must be what the exact path returns -- the same records, key
order included -- and whatever it raises must be the exact path's reason, byte for byte.
Messages are realistic samples, rendered, then edited at random: values swapped for
awkward ones, lines dropped, duplicated, inserted or re-spaced, separators broken.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    JOB,
    NORMALISED_SUMMARY,
    SUMMARY,
    SYNC,
    InvalidMessage,
    parse_message,
    render_message,
)
from apel.records.fields import EPOCH, EPOCH_MAX, EPOCH_MIN
from apel.records.text import parse_records, route
from apel.records.text_fast import reader_for
from apel.samples import cloud_records, job_records, summary_records

UTC = timezone.utc
NOW = datetime.now(UTC).replace(microsecond=0)


def _normalised(count: int) -> list[dict]:
    records = []
    for record in summary_records(count, seed=5, now=NOW):
        record = dict(record, Infrastructure="grid", NormalisedWallDuration=record["WallDuration"] * 10,
                      NormalisedCpuDuration=record["CpuDuration"] * 10)
        records.append(record)
    return records


def _sync(count: int) -> list[dict]:
    return [{"Site": f"SITE-{n}", "SubmitHost": f"ce{n}.example.org", "NumberOfJobs": 100 + n,
             "Month": NOW.month, "Year": NOW.year - 1} for n in range(count)]


def _cloud_summary(count: int) -> list[dict]:
    return [{"SiteName": "CESGA", "CloudComputeService": "cloud.cesga.es", "Month": NOW.month,
             "Year": NOW.year - 1, "GlobalUserName": f"/DC=org/CN=user {n}", "VO": "fedcloud.egi.eu",
             "VOGroup": "/fedcloud.egi.eu", "VORole": "Role=NULL", "Status": "completed",
             "CloudType": "OpenStack", "ImageId": "ubuntu", "EarliestStartTime": NOW - timedelta(days=40),
             "LatestStartTime": NOW - timedelta(days=35), "WallDuration": 3600 * n, "CpuDuration": 1800 * n,
             "CpuCount": 2.0, "NetworkInbound": None, "NetworkOutbound": 5, "Memory": 4, "Disk": None,
             "BenchmarkType": "HEPSPEC", "Benchmark": 10.5, "NumberOfVMs": n + 1} for n in range(count)]


BASES = [  # (label, record type, records, render options)
    ("job v0.3", JOB, list(job_records(4, seed=11, now=NOW)), {}),
    ("job v0.4", JOB, list(job_records(4, seed=12, now=NOW)), {"dict_benchmark": True}),
    ("summary v0.2", SUMMARY, list(summary_records(4, seed=13, now=NOW)), {}),
    ("summary v0.4", SUMMARY, list(summary_records(4, seed=14, now=NOW)), {"dict_benchmark": True}),
    ("normalised v0.3", NORMALISED_SUMMARY, _normalised(4), {}),
    ("normalised v0.4", NORMALISED_SUMMARY, _normalised(4), {"dict_benchmark": True}),
    ("sync", SYNC, _sync(4), {}),
    ("cloud", CLOUD, list(cloud_records(6, seed=15, now=NOW)), {}),
    ("cloud summary", CLOUD_SUMMARY, _cloud_summary(4), {}),
]

AWKWARD = [
    "", "None", "NULL", "nOnE", " 5 ", "0", "-1", "7", "+7", "1_000", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "1.5", "10.7", "1e3", "nan", "inf", "-inf",
    "2024-01-31T10:00:00Z", "2024-02-30T10:00:00Z", "1700000000", str(EPOCH_MIN), str(EPOCH_MIN - 1),
    str(EPOCH_MAX), str(EPOCH_MAX + 1), str(int(NOW.timestamp()) + 3 * 86400), "\u0663", "x", "a:b",
    "{hepspec: 10}", "{HEPscore23: 15.3, hepspec: 11.4}", "{si2k: 2500}", "{foo: 1}", "{hepspec: nan}",
    "{hepspec: 1, hepspec: 2}", "{}", "{hepspec:}", "{HEPSPEC: 10.7}", "HEPSPEC", "si2k", "hepscore23",
    "custom", "/atlas/Role=production", "/cms/uscms/Role=pilot/Capability=NULL", "atlas", "12", "2099",
    "1969", "13", "x" * 21, "x" * 51, "y" * 101, "z" * 256, "a%%b", "%", "  padded  ",
]
EXTRA_LINES = ["UpdateTime: 1700000000", "SubmitHostType: x", "Unknown: 1", "no colon here", "", "   ",
               "%%", "Site: duplicate-ish"]


def _message(base: int) -> tuple[str, list[list[str]]]:
    _, record_type, records, options = BASES[base]
    body = render_message(record_type, records, **options)
    header, _, rest = body.partition("\n")
    chunks = [chunk.strip("\n").split("\n") for chunk in rest.split("%%\n") if chunk.strip()]
    return header, chunks


def _outcome(call):
    try:
        return "ok", call()
    except InvalidMessage as exc:
        return "refused", str(exc)


def _assert_agrees(header: str, rest: str) -> bool:
    """True if the bulk reader took the message (and then agreed with the exact path)."""
    spec = route(header)
    fast = _outcome(lambda: reader_for(spec).read(rest.split("%%"), NOW))
    if fast == ("ok", None):
        return False
    exact = _outcome(lambda: parse_records(spec, rest.split("%%"), NOW))
    assert fast == exact
    if fast[0] == "ok":
        assert [list(record) for record in fast[1]] == [list(record) for record in exact[1]]
        assert [[type(value) for value in record.values()] for record in fast[1]] == \
            [[type(value) for value in record.values()] for record in exact[1]]
    return True


@pytest.mark.parametrize("base", range(len(BASES)), ids=[label for label, *_ in BASES])
def test_canonical_messages_are_read_in_bulk(base):
    header, chunks = _message(base)
    rest = "".join("\n".join(lines) + "\n%%\n" for lines in chunks).rstrip("\n")
    assert _assert_agrees(header, rest)
    # and through the public API, with the header and the whole body as sent
    label, record_type, records, options = BASES[base]
    parsed = parse_message(render_message(record_type, records, **options))
    assert len(parsed.records) == len(records)


edits = st.lists(st.tuples(
    st.sampled_from(["value", "value", "value", "drop", "dup", "insert", "respace", "separator"]),
    st.integers(0, 10), st.integers(0, 40), st.sampled_from(AWKWARD), st.sampled_from(EXTRA_LINES),
    st.sampled_from([":", "  :  ", ": \r", " :", ":\t"]),
    st.sampled_from(["%%%", "", "%%\n%%", "\n%%", "%% ", "%%\n\n"])), max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(BASES) - 1), edits, st.booleans())
def test_edited_messages_agree_with_the_exact_path(base, changes, trailing_separator):
    header, chunks = _message(base)
    separators = ["%%"] * len(chunks)
    for kind, record, line, value, extra, colon, separator in changes:
        lines = chunks[record % len(chunks)]
        at = line % len(lines) if lines else 0
        if kind == "value" and lines:
            key = lines[at].partition(":")[0]
            lines[at] = f"{key}: {value}"
        elif kind == "drop" and lines:
            del lines[at]
        elif kind == "dup" and lines:
            lines.insert(at, lines[at])
        elif kind == "insert":
            lines.insert(at, extra)
        elif kind == "respace" and lines:
            key, _, text = lines[at].partition(": ")
            lines[at] = f"{key}{colon}{text}"
        elif kind == "separator":
            separators[record % len(separators)] = separator
    rest = "".join("\n".join(lines) + "\n" + separator + "\n" for lines, separator in zip(chunks, separators))
    if not trailing_separator:
        rest = rest[:rest.rfind("%%")] if rest.endswith("%%\n") else rest
    _assert_agrees(header, rest.rstrip())


CROSS_FIELD = [  # (base, record, field, value): valid fields, a per-record rule broken
    (0, 2, "EndTime", "1000000000"),
    (0, 1, "EndTime", str(int(NOW.timestamp()) + 3 * 86400)),
    (0, 3, "ServiceLevelType", "custom"),
    (0, 0, "ServiceLevel", "None"),
    (1, 2, "EndTime", "1000000000"),
    (2, 1, "Year", "2999"),
    (2, 2, "EarliestEndTime", "1000000000"),
    (2, 3, "LatestEndTime", "None"),
    (4, 1, "Month", str(NOW.month % 12 + 1)),
    (5, 0, "LatestEndTime", "1000000000"),
]


# ids without the values: some depend on the clock, and every xdist worker must collect the same ids
@pytest.mark.parametrize("base, record, field, value", CROSS_FIELD,
                         ids=[f"{base}-{record}-{field}" for base, record, field, _ in CROSS_FIELD])
def test_cross_field_rules_raise_the_exact_reason(base, record, field, value):
    header, chunks = _message(base)
    lines = chunks[record]
    keys = [line.partition(":")[0] for line in lines]
    if field in keys:
        lines[keys.index(field)] = f"{field}: {value}"
    else:
        lines.append(f"{field}: {value}")
    rest = "".join("\n".join(lines) + "\n%%\n" for lines in chunks).rstrip("\n")
    assert _assert_agrees(header, rest) or "None" in value


def test_epoch_datetimes_match_the_exact_construction():
    """The bulk reader builds epoch datetimes with fromtimestamp; the exact path adds a timedelta."""
    rng = random.Random(3)
    for seconds in [EPOCH_MIN, EPOCH_MAX, -1, 0, 1, 2**31, -(2**31)] + \
            [rng.randint(EPOCH_MIN, EPOCH_MAX) for _ in range(20000)]:
        built = datetime.fromtimestamp(seconds, UTC)
        expected = EPOCH + timedelta(seconds=seconds)
        assert built == expected and built.tzinfo is expected.tzinfo and str(built) == str(expected)
