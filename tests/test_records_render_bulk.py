"""The column-wise renderer writes exactly what a plain field-by-field renderer writes.

``reference`` below is the straightforward renderer (one line per present field, values
through ``format_value``); ``render_message`` must produce the same text for any records,
including awkward values in any field: datetimes naive, UTC or in other zones, Decimals,
bools, tuples, str subclasses, None and "" anywhere, missing keys.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    FIELDS,
    JOB,
    NORMALISED_SUMMARY,
    SUMMARY,
    SYNC,
    render_message,
)
from apel.records.definitions import DICT_FIELDS_BY_TYPE, RENDER_HEADERS
from apel.records.render import WITHHELD, format_value
from apel.samples import cloud_records, job_records, summary_records

UTC = timezone.utc


def reference(record_type, records, dict_benchmark=False, include_infrastructure_description=False,
              withhold_dns=False, decimal_cpu_count=False):
    header = RENDER_HEADERS[record_type][1 if dict_benchmark else 0]
    dict_fields = DICT_FIELDS_BY_TYPE.get(record_type, ()) if dict_benchmark else ()
    out = [header, "\n"]
    for record in records:
        for field in FIELDS[record_type]:
            name = field.name
            if not field.in_message or (dict_fields and name == "ServiceLevelType"):
                continue
            if name == "InfrastructureDescription" and record_type in (SUMMARY, NORMALISED_SUMMARY) \
                    and not include_infrastructure_description:
                continue
            value = record.get(name)
            if name in dict_fields:
                level_type = record.get("ServiceLevelType")
                level_type = "HEPSPEC" if level_type in (None, "", "None") else level_type
                value = None if value is None else f"{{{level_type}: {format_value(value)}}}"
            elif withhold_dns and name == "GlobalUserName":
                value = WITHHELD
            elif record_type == CLOUD and name == "CpuCount" and not decimal_cpu_count and value is not None:
                value = 1 if 0 < value < 1 else int(value)
            if value is None or value == "":
                continue
            out.append(f"{name}: {format_value(value)}\n")
        out.append("%%\n")
    return "".join(out)


class Text(str):
    """A str subclass, as a database driver might hand back."""


TOKYO = timezone(timedelta(hours=9))
awkward = st.one_of(
    st.none(), st.just(""), st.just("None"), st.text(max_size=8).filter(lambda s: "\n" not in s),
    st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.decimals(allow_nan=False, places=3, min_value=-10**6, max_value=10**6),
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(TOKYO)),
    st.tuples(st.integers(0, 3)), st.builds(Text, st.text(max_size=5).filter(lambda s: "\n" not in s)),
)
TYPES = [JOB, SUMMARY, NORMALISED_SUMMARY, SYNC, CLOUD, CLOUD_SUMMARY]
DICT_TYPES = [JOB, SUMMARY, NORMALISED_SUMMARY]


@st.composite
def case(draw):
    record_type = draw(st.sampled_from(TYPES))
    names = [field.name for field in FIELDS[record_type]]
    records = []
    base = draw(st.sampled_from([None, "job", "summary", "cloud"]))
    for number in range(draw(st.integers(0, 4))):
        if base == "job":
            record = dict(next(job_records(1, seed=number)))
        elif base == "summary":
            record = dict(next(summary_records(1, seed=number)))
        elif base == "cloud":
            record = dict(next(cloud_records(1, seed=number)))
        else:
            record = {}
        for name in draw(st.lists(st.sampled_from(names), max_size=6)):
            record[name] = draw(awkward)
        for name in draw(st.lists(st.sampled_from(names), max_size=2)):
            record.pop(name, None)
        records.append(record)
    if record_type == CLOUD and draw(st.booleans()):
        for record in records:  # CpuCount must compare with numbers unless decimal_cpu_count
            record["CpuCount"] = draw(st.one_of(st.none(), st.floats(0, 64), st.integers(0, 64)))
    options = {
        "dict_benchmark": record_type in DICT_TYPES and draw(st.booleans()),
        "include_infrastructure_description": draw(st.booleans()),
        "withhold_dns": record_type in (JOB, SYNC, CLOUD) and draw(st.booleans()),
        "decimal_cpu_count": draw(st.booleans()),
    }
    return record_type, records, options


def _outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # the same failure, if any, from both
        return "failed", type(exc)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_render_matches_the_field_by_field_reference(drawn):
    record_type, records, options = drawn
    expected = _outcome(lambda: reference(record_type, records, **options))
    assert _outcome(lambda: render_message(record_type, records, **options)) == expected
    # and from an iterator, as the unloader may pass
    assert _outcome(lambda: render_message(record_type, iter(records), **options)) == expected


@pytest.mark.parametrize("record_type, factory, options", [
    (JOB, job_records, {}), (JOB, job_records, {"dict_benchmark": True}),
    (SUMMARY, summary_records, {}), (SUMMARY, summary_records, {"dict_benchmark": True}),
    (CLOUD, cloud_records, {}), (CLOUD, cloud_records, {"decimal_cpu_count": True, "withhold_dns": True}),
])
def test_sample_messages_match_the_reference(record_type, factory, options):
    records = list(factory(300, seed=9))
    naive = [{key: value.replace(tzinfo=None) if isinstance(value, datetime) else value
              for key, value in record.items()} for record in records]
    for batch in (records, naive, [{**record, "ServiceLevel": Decimal("10.500")} for record in records]):
        assert render_message(record_type, batch, **options) == reference(record_type, batch, **options)
