"""Hypothesis strategies for valid records of every type, shared by the round-trip tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    FIELDS,
    JOB,
    NORMALISED_SUMMARY,
    SUMMARY,
    SYNC,
    parse_fqan,
)
from apel.records.fields import NULL_WORDS

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = datetime.now(UTC)
PAST_YEAR = NOW.year - 1

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text a value can carry unchanged through both formats: no control characters, surrogates or
# non-characters (not allowed in XML), no '%%' (the record separator), no outer whitespace,
# and not a null spelling.
_chars = st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Zl", "Zp"))
text = st.text(_chars, min_size=1, max_size=20).filter(
    lambda s: s == s.strip() and "%%" not in s and s.lower() not in NULL_WORDS)
optional_text = st.one_of(st.just("None"), text)


def ints(lo: int, hi: int, optional: bool = True):
    values = st.integers(lo, hi)
    return st.one_of(st.none(), values) if optional else values


def floats(lo: float = 0.0, hi: float = 9_999_999.999, optional: bool = True):
    values = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return st.one_of(st.none(), values) if optional else values


def epochs(lo: int = 0, hi: int = int(NOW.timestamp())):
    return st.integers(lo, hi).map(lambda n: EPOCH + timedelta(seconds=n))


def optional_datetime(lo: int = -10**9, hi: int = 4_000_000_000):
    return st.one_of(st.none(), epochs(lo, hi))


@st.composite
def vo_fields(draw, derived_always: bool = False) -> dict:
    fqan = draw(st.one_of(
        st.just("None"),
        st.builds(lambda vo, group, role: f"/{vo}{group}/Role={role}/Capability=NULL",
                  st.from_regex(r"[a-z]{1,6}", fullmatch=True),
                  st.sampled_from(["", "/uk", "/higgs/sub"]), st.sampled_from(["NULL", "production"])),
        text))
    if fqan != "None" or derived_always:
        vo, group, role = parse_fqan(fqan)
    else:
        vo, group, role = draw(optional_text), draw(optional_text), draw(optional_text)
    return {"FQAN": fqan, "VO": vo, "VOGroup": group, "VORole": role}


def fill_record(record_type: str, values: dict, draw) -> dict:
    """Every field of the type, in order: the given values, else a drawn value of the field's kind."""
    record = {}
    for field in FIELDS[record_type]:
        if field.name in values:
            record[field.name] = values[field.name]
        elif field.kind == "s":
            record[field.name] = draw(text) if field.mandatory else draw(optional_text)
        elif field.kind == "i":
            record[field.name] = draw(ints(field.minimum, field.maximum, optional=not field.mandatory))
        elif field.kind == "f":
            record[field.name] = draw(floats(field.minimum, field.maximum, optional=not field.mandatory))
        else:
            record[field.name] = draw(epochs(0, 2_000_000_000) if field.mandatory else optional_datetime())
    return record


@st.composite
def jobs(draw, dict_mode: bool = False) -> dict:
    start = draw(st.integers(0, int(NOW.timestamp())))
    end = draw(st.integers(start, int(NOW.timestamp()) + 86400))
    types = ["si2k", "hepspec", "hepscore23"] if dict_mode else ["si2k", "SI2K", "HEPSPEC", "hepspec",
                                                                 "HEPscore23"]
    values = {
        **draw(vo_fields()),
        "StartTime": EPOCH + timedelta(seconds=start), "EndTime": EPOCH + timedelta(seconds=end),
        "ServiceLevelType": draw(st.sampled_from(types)), "ServiceLevel": draw(floats(optional=False)),
    }
    return fill_record(JOB, values, draw)


@st.composite
def month_year(draw) -> dict:
    return {"Month": draw(st.integers(1, 12)), "Year": draw(st.integers(1970, PAST_YEAR))}


@st.composite
def end_times(draw, month: int, year: int, names=("EarliestEndTime", "LatestEndTime")) -> dict:
    if draw(st.booleans()):
        return {names[0]: None, names[1]: None}
    start = datetime(year, month, 1, tzinfo=UTC)
    stop = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    span = int((stop - start).total_seconds())
    a, b = sorted(draw(st.lists(st.integers(0, span), min_size=2, max_size=2)))
    return {names[0]: start + timedelta(seconds=a), names[1]: start + timedelta(seconds=b)}


@st.composite
def summaries(draw, dict_mode: bool = False) -> dict:
    values = draw(month_year())
    values.update(draw(end_times(values["Month"], values["Year"])))
    if dict_mode:
        values["ServiceLevelType"] = draw(st.sampled_from(["si2k", "hepspec", "hepscore23"]))
    return fill_record(SUMMARY, values, draw)


@st.composite
def normalised_summaries(draw, dict_mode: bool = False) -> dict:
    values = draw(month_year())
    values.update(draw(end_times(values["Month"], values["Year"])))
    values["ServiceLevelType"] = draw(st.sampled_from(["si2k", "hepspec", "hepscore23"])) if dict_mode \
        else "None"
    return fill_record(NORMALISED_SUMMARY, values, draw)


@st.composite
def syncs(draw) -> dict:
    return fill_record(SYNC, draw(month_year()), draw)


@st.composite
def clouds(draw) -> dict:
    return fill_record(CLOUD, draw(vo_fields(derived_always=True)), draw)


@st.composite
def cloud_summaries(draw) -> dict:
    return fill_record(CLOUD_SUMMARY, draw(month_year()), draw)


def records_of(strategy):
    return st.lists(strategy, min_size=0, max_size=4)


@st.composite
def storage_messages(draw):
    records, attributes = [], []
    for number in range(draw(st.integers(1, 3))):
        values = {"RecordId": f"{draw(text)}-{number}"}
        record = fill_record("storage", values, draw)
        records.append(record)
        for kind in draw(st.lists(text.filter(lambda s: s not in ("subgroup", "role")), max_size=3,
                                  unique=True)):
            attributes.append({"StarRecordID": record["RecordId"], "AttributeType": kind,
                               "AttributeValue": draw(optional_text)})
    return records, attributes
