"""String fields that look like numbers are stored and unloaded as the text that was sent.

A site name ``NaN``, a queue ``1e5``, a user id ``0x10`` or ``007`` are names, not numbers:
if any layer read them through ``float()``/``int()`` they would come back as ``nan``,
``100000.0``, ``16`` or ``7``. For every record type and message format, hypothesis puts
number-like text into every string field the sender writes, and each message goes the
whole way a user's would: parse, load into a real database (MariaDB and SQLite), unload
with the unloader, parse the unloaded message; each string field must read back as sent
(values are whitespace-stripped by both message formats, so that is the text compared).
"""

from __future__ import annotations

import contextlib
import itertools
import os

import pytest
from dirq.QueueSimple import QueueSimple
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_strategies import (
    cloud_summaries,
    clouds,
    jobs,
    normalised_summaries,
    storage_messages,
    summaries,
    syncs,
)

from apel.db.backend import load_backend
from apel.db.mysql_backend import apply_schema
from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    FIELDS,
    JOB,
    NORMALISED_SUMMARY,
    STORAGE,
    SUMMARY,
    SYNC,
    parse_fqan,
    parse_message,
    render_car,
    render_message,
    render_star,
)
from apel.records.fields import NULL_WORDS, STR
from apel.services.unloader import Unloader, UnloaderSettings

PUBLISHER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=publisher.example.org"
SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

pytestmark = pytest.mark.timeout(600)

# Text Python's float() or int() would read as a number (or that once was read as one).
NUMBER_LIKE = (
    "NaN", "nan", "-NaN", "+nan", "Infinity", "-Infinity", "inf", "-inf", "INF", "1e5", "1E-5",
    "0x10", "0o17", "0b101", "1_000", "007", "-0", "+3", "7", "1.50", "5.", ".5", "1e309",
    "\uff11\uff12", "\u0663", "12345678901234567890", "0.1e-400", "7 7", "NaN NaN",
)
number_like = st.one_of(
    st.sampled_from(NUMBER_LIKE),
    st.from_regex(r"[+-]?(\d{1,4}(\.\d{0,3})?|\.\d{1,3})([eE][+-]?\d{1,3})?", fullmatch=True),
    st.integers().map(str),
    st.floats().map(repr),
)
_outboxes = itertools.count()


def _fits(value: str) -> bool:
    return value == value.strip() and "%%" not in value and value.lower() not in NULL_WORDS


def fitting(max_length: int):
    """Number-like text a string field of ``max_length`` takes unchanged through a message."""
    return number_like.filter(lambda value: _fits(value) and len(value) <= max_length)


def _derived(record_type: str, record: dict, dict_mode: bool) -> frozenset[str]:
    """String fields the sender does not choose freely: VO parts from an FQAN, the benchmark type
    (a job's must be a benchmark; a v0.4 dict's key is one)."""
    names = {"ServiceLevelType"} if record_type == JOB or dict_mode else set()
    if record_type == CLOUD or (record_type == JOB and record["FQAN"] != "None"):
        names |= {"VO", "VOGroup", "VORole"}
    return frozenset(names)


@st.composite
def number_like_strings(draw, record_type: str, record: dict, dict_mode: bool = False) -> dict:
    """``record`` with number-like text in most of its string fields (the VO parts follow the FQAN)."""
    record = dict(record)
    derived = _derived(record_type, record, dict_mode)
    for field in FIELDS[record_type]:
        chosen = field.kind == STR and field.in_message and field.name not in derived
        if chosen and draw(st.booleans()):
            record[field.name] = draw(fitting(field.max_length))
    if record_type == CLOUD or (record_type == JOB and record["FQAN"] != "None"):
        record["VO"], record["VOGroup"], record["VORole"] = parse_fqan(record["FQAN"])
    return record


def strings_of(record_type: str, record: dict) -> dict:
    return {f.name: record[f.name] for f in FIELDS[record_type] if f.kind == STR}


class Database:
    """One database, emptied before each example (names are matched case-insensitively, first
    spelling wins, so an earlier example's ``NaN`` would answer for a later ``nan``), loaded
    and unloaded through connections of their own, as apeldbloader and apeldbunloader would
    (a backend keeps the ids of the names it has seen)."""

    KEEP = ("SchemaVersion", "SummariserGate")  # the schema's own rows

    def __init__(self, settings: dict, tmp_path) -> None:
        self.settings, self.tmp_path = settings, tmp_path
        with self.connected() as backend:
            if backend.name == "mysql":
                listing = ("SELECT table_name FROM information_schema.tables"
                           " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'")
            else:
                listing = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            self.tables = [name for (name,) in backend.query(listing) if name not in self.KEEP]

    @contextlib.contextmanager
    def connected(self):
        backend = load_backend(self.settings["backend"])(self.settings)
        backend.connect()
        try:
            yield backend
        finally:
            backend.close()

    def round_trip(self, body: str, view: str, **options) -> list[str]:
        """Load ``body`` into the emptied database, unload ``view`` with ``options``: the texts."""
        outgoing = self.tmp_path / f"out{next(_outboxes)}"
        with self.connected() as backend:
            with backend.transaction() as tx:
                for table in self.tables:
                    tx.execute(f"DELETE FROM {table}")  # noqa: S608 - names from the schema itself
            backend.load_message(parse_message(body), PUBLISHER)
        with self.connected() as backend:
            Unloader(UnloaderSettings(str(outgoing), view, interval="all", **options), backend).run()
        queue = QueueSimple(os.path.join(outgoing, "outgoing"))
        return [queue.get(name).decode("utf-8") for name in queue if queue.lock(name)]


@pytest.fixture(params=[pytest.param("mysql", marks=pytest.mark.services), "sqlite"])
def database(request, tmp_path):
    if request.param == "mysql":
        args = request.getfixturevalue("mysql_database")
        apply_schema(args)
        settings_ = {"backend": "mysql", "hostname": args["host"], "port": str(args["port"]),
                     "name": args["database"], "username": args["user"], "password": args["password"]}
    else:
        settings_ = {"backend": "sqlite", "name": str(tmp_path / "db" / "apel.sqlite3")}
    return Database(settings_, tmp_path)


def _records_after(database: Database, body: str, view: str, **options) -> list[dict]:
    return [record for text in database.round_trip(body, view, **options)
            for record in parse_message(text).records]


def _one_record(strategy, record_type: str, dict_mode: bool = False):
    """One record per message: names are matched case-insensitively, first spelling wins, so two
    records of a message with ``NaN`` and ``nan`` in one field would rightly store one of them."""
    return strategy.flatmap(lambda record: number_like_strings(record_type, record, dict_mode))


def _tame_durations(record: dict) -> dict:
    """Cloud durations small enough that StartTime + durations stays a storable MeasurementTime
    (this test is about strings; a MeasurementTime beyond year 9999 is refused, rightly)."""
    return dict(record, **{name: min(record[name], 10**6) for name in ("SuspendDuration", "WallDuration")
                           if record[name] is not None})


TEXT_CASES = [
    # record type, strategy, render options, view, unloader options
    (JOB, jobs(), {}, "VJobRecords", {"local_jobs": True}),
    (JOB, jobs(dict_mode=True), {"dict_benchmark": True}, "VJobRecords", {"local_jobs": True}),
    (SUMMARY, summaries(), {"include_infrastructure_description": True}, "VSummaries",
     {"local_jobs": True, "include_infrastructure_description": True}),
    (SUMMARY, summaries(dict_mode=True), {"dict_benchmark": True, "include_infrastructure_description": True},
     "VSummaries", {"local_jobs": True, "include_infrastructure_description": True}),
    (NORMALISED_SUMMARY, normalised_summaries(), {"include_infrastructure_description": True},
     "VNormalisedSummaries", {"local_jobs": True, "include_infrastructure_description": True}),
    (SYNC, syncs(), {}, "VSyncRecords", {"local_jobs": True}),
    (CLOUD, clouds().map(_tame_durations), {"decimal_cpu_count": True}, "VCloudRecords",
     {"decimal_cpu_count": True}),
    (CLOUD_SUMMARY, cloud_summaries(), {}, "VCloudSummaries", {}),
]


@pytest.mark.parametrize(("record_type", "strategy", "render", "view", "options"), TEXT_CASES,
                         ids=[f"{case[0]}{'-v04' * ('dict_benchmark' in case[2])}" for case in TEXT_CASES])
def test_number_like_strings_survive_text_messages(database, record_type, strategy, render, view, options):
    @SETTINGS
    @given(_one_record(strategy, record_type, render.get("dict_benchmark", False)), st.booleans())
    def check(record, indented):
        body = render_message(record_type, [record], **render)
        if indented:  # allowed, and read by the exact, record-by-record path instead of the bulk one
            body = body.replace("\n", "\n  ")
        received = _records_after(database, body, view, **options)
        assert [strings_of(record_type, r) for r in received] == [strings_of(record_type, record)]

    check()


def test_number_like_strings_survive_car_messages(database):
    @SETTINGS
    @given(_one_record(jobs(), JOB))
    def check(record):
        received = _records_after(database, render_car([record]), "VJobRecords", local_jobs=True,
                                  send_ur=True)
        assert [strings_of(JOB, r) for r in received] == [strings_of(JOB, record)]

    check()


def test_number_like_strings_survive_star_messages(database):
    @SETTINGS
    @given(_one_record(storage_messages().map(lambda message: message[0][0]), STORAGE),
           st.lists(st.tuples(fitting(255), fitting(255)), max_size=3,
                    unique_by=lambda pair: pair[0].lower()))
    def check(record, pairs):
        attributes = [{"StarRecordID": record["RecordId"], "AttributeType": kind, "AttributeValue": value}
                      for kind, value in pairs]
        (message,) = [parse_message(text) for text in
                      database.round_trip(render_star([record], attributes), "VStarRecords", send_ur=True)]
        assert [strings_of(STORAGE, r) for r in message.records] == [strings_of(STORAGE, record)]
        assert sorted(message.group_attributes, key=repr) == sorted(attributes, key=repr)

    check()
