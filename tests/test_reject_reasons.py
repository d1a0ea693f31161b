"""Reject reasons stay short whatever a message holds.

A reason is what an operator reads in the log and in the reject queue; one that echoes a
10,000-character value whole is useless there. Every value a reason quotes is cut to its
start and its length (``'aaaa…' (10000 characters)``): hypothesis builds text and XML
messages with very long keys, values, headers and tags at every place a reason quotes,
and no reason may exceed :data:`BOUND`.
"""

from __future__ import annotations

from dataclasses import replace
from xml.sax.saxutils import escape, quoteattr

import pytest
from car_messages import car, car_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apel.db import rows
from apel.db.backend import StorageError
from apel.records import InvalidMessage, parse_message
from apel.records.quote import quote

BOUND = 400  # characters of a reason (the loader adds "Parsing unsuccessful: ")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JOB_LINES = {
    "Site": "RAL-LCG2", "LocalJobId": "job-1", "WallDuration": "3600", "CpuDuration": "3000",
    "StartTime": "1706738400", "EndTime": "1706743800", "ServiceLevelType": "HEPSPEC", "ServiceLevel": "10.5",
    "Processors": "8", "InfrastructureType": "grid", "FQAN": "/atlas/Role=production",
}
V04_LINES = {**{k: v for k, v in JOB_LINES.items() if k != "ServiceLevelType"},
             "ServiceLevel": "{HEPSPEC: 10.5}"}
SUMMARY_LINES = {
    "Site": "RAL-LCG2", "Month": "1", "Year": "2024", "ServiceLevelType": "HEPSPEC", "ServiceLevel": "10.0",
    "NodeCount": "1", "Processors": "8", "WallDuration": "100", "CpuDuration": "90", "NumberOfJobs": "2",
    "EarliestEndTime": "1704412800", "LatestEndTime": "1705708800",
}
HEADERS = {
    "APEL-individual-job-message: v0.3": JOB_LINES,
    "APEL-individual-job-message: v0.4": V04_LINES,
    "APEL-summary-job-message: v0.2": SUMMARY_LINES,
}


LONG_DICT = "{" + "b" * 10_000 + ":1}"


def reason(body: str) -> str:
    with pytest.raises(InvalidMessage) as info:
        parse_message(body)
    return str(info.value)


def text_message(header: str, lines: dict, extra: str = "") -> str:
    return header + "\n" + "\n".join(f"{key}: {value}" for key, value in lines.items()) + extra + "\n%%\n"


# Long text: a short unit repeated, so hypothesis can reach tens of thousands of characters cheaply.
long_text = st.builds(lambda unit, count: unit * count,
                      st.text(min_size=1, max_size=4), st.integers(min_value=20, max_value=5000))
any_text = st.one_of(long_text, st.text(max_size=40), long_text.map(lambda s: "9" * len(s)))
one_line = any_text.map(lambda s: s.replace("\n", " ").replace("\r", " ").replace("%", "p"))


@st.composite
def text_messages(draw) -> str:
    header = draw(st.sampled_from(sorted(HEADERS)))
    lines = dict(HEADERS[header])
    where = draw(st.sampled_from(["value", "dict", "key", "no colon", "header"]))
    if where == "header":
        return text_message(draw(one_line), lines)
    if where == "no colon":
        return text_message(header, lines, "\n" + draw(one_line).replace(":", ";"))
    if where == "key":
        key = draw(one_line).replace(":", ";").strip() or "k"
        return text_message(header, {**lines, key: "1"})
    field = draw(st.sampled_from(sorted(lines)))
    value = draw(one_line)
    if where == "dict":
        forms = [value, f"{value}: 1", f"hepspec: {value}", f"{value}: 1, {value}: 2", f"si2k: 1, {value}: 2",
                 f"hepspec: 1, hepspec: {value}"]
        value = "{" + draw(st.sampled_from(forms)) + "}"
    return text_message(header, {**lines, field: value})


@st.composite
def xml_messages(draw) -> str:
    value = draw(any_text.filter(lambda s: all(c.isprintable() or c in "\t\n" for c in s)))
    where = draw(st.sampled_from(["job id", "wall", "end", "level type", "tag", "site"]))
    if where == "job id":
        return car(car_record(job_id=escape(value)))
    if where == "wall":
        return car(car_record(wall=escape(value)))
    if where == "end":
        return car(car_record(end=escape(value)))
    if where == "level type":
        level = f"<urf:ServiceLevel urf:type={quoteattr(value)}>1</urf:ServiceLevel>"
        return car(car_record(service_level=level))
    if where == "site":
        return car(car_record().replace(">RAL-LCG2<", f">{escape(value)}<"))
    tag = "x" + "".join(c for c in value if c.isalnum()) or "x"
    return f"<{tag}/>"


@SETTINGS
@given(st.one_of(text_messages(), xml_messages()))
def test_no_reason_is_longer_than_the_bound(body):
    try:
        parse_message(body)
    except InvalidMessage as exc:
        assert len(str(exc)) <= BOUND, str(exc)


# -- examples: what an operator sees ----------------------------------------------------------


def test_quote_keeps_short_values_and_cuts_long_ones_with_their_length():
    assert quote("RAL-LCG2") == "'RAL-LCG2'"
    assert quote(42) == "42"
    assert quote("a" * 10_000) == "'" + "a" * 80 + "\u2026' (10000 characters)"
    assert quote("k" * 500, bare=True) == "k" * 80 + "\u2026 (500 characters)"
    escaped = quote("\x00" * 1000)  # escapes count: a reason stays short for control characters too
    assert len(escaped) < 110 and escaped.endswith("(1000 characters)")
    assert quote(10**5000) == "an integer of about 5000 digits"


@pytest.mark.parametrize(("body", "start"), [
    (text_message("APEL-individual-job-message: v0.3", {**JOB_LINES, "Site": "x" * 10_000})[:-3],
     "record 1: field Site: value of 10000 characters is longer than the maximum 255"),
    (text_message("APEL-individual-job-message: v0.3", {**JOB_LINES, "WallDuration": "w" * 10_000}),
     "record 1: field WallDuration: Invalid int value '" + "w" * 80 + "\u2026' (10000 characters)"),
    (text_message("APEL-individual-job-message: v0.3", {**JOB_LINES, "EndTime": "e" * 10_000}),
     "record 1: field EndTime: Invalid datetime value '" + "e" * 80 + "\u2026' (10000 characters)"),
    (text_message("APEL-individual-job-message: v0.3", {**JOB_LINES, "ServiceLevel": "s" * 10_000}),
     "record 1: field ServiceLevel: Invalid float value '" + "s" * 80 + "\u2026' (10000 characters)"),
    (text_message("APEL-individual-job-message: v0.3", {**JOB_LINES, "ServiceLevelType": "t" * 50}),
     "record 1: field ServiceLevelType: value '" + "t" * 50 + "' is not a valid benchmark type"),
    (text_message("APEL-individual-job-message: v0.3", {**JOB_LINES, "K" * 10_000: "1"}),
     "record 1: Unknown field: " + "K" * 80 + "\u2026 (10000 characters)"),
    (text_message("APEL-individual-job-message: v0.3", JOB_LINES, "\n" + "n" * 10_000),
     "record 1: Message header is incorrect: not enough values to unpack (line 12 of the record has no ':': '"
     + "n" * 80 + "\u2026' (10000 characters))"),
    (text_message("H" * 10_000, JOB_LINES),
     "Message header is incorrect: substring not found (no ':' in the header line '" + "H" * 80
     + "\u2026' (10000 characters))"),
    (text_message("APEL-" + "h" * 10_000 + ": v0.3", JOB_LINES),
     "Message header is incorrect: unknown message type 'APEL-" + "h" * 75 + "\u2026' (10011 characters)"),
    (text_message("APEL-individual-job-message: v0.4", {**V04_LINES, "ServiceLevel": LONG_DICT}),
     "record 1: field ServiceLevel: No valid benchmark type found in '{" + "b" * 79
     + "\u2026' (10004 characters)"),
    (car(car_record(wall="P" * 10_000)),
     "record 1: field WallDuration: Invalid ISO 8601 duration value '" + "P" * 80
     + "\u2026' (10000 characters)"),
    (car(car_record(end="2" * 10_000)),
     "record 1: field EndTime: Invalid ISO 8601 datetime value '" + "2" * 80 + "\u2026' (10000 characters)"),
    ("<" + "r" * 10_000 + "/>",
     "XML format not recognised. (root element '" + "r" * 80 + "\u2026' (10000 characters))"),
])
def test_long_values_are_shown_by_their_start_and_length(body, start):
    text = reason(body)
    assert text.startswith(start), text
    assert len(text) <= BOUND


def test_storage_reasons_cut_values_too():
    """Values that reach the row builder (a plug-in parser, a future field) are cut the same way."""
    message = parse_message(text_message("APEL-individual-job-message: v0.3", JOB_LINES))
    record = message.records[0]
    for field, value in (("Site", 5), ("WallDuration", 10**5000), ("WallDuration", "w" * 10_000),
                         ("ServiceLevel", "s" * 10_000), ("EndTime", "e" * 10_000)):
        with pytest.raises(StorageError) as info:
            rows.build_message(replace(message, records=[dict(record, **{field: value})]), "/CN=publisher")
        assert len(str(info.value)) <= BOUND, str(info.value)
