"""Property tests: valid records rendered and parsed again are identical, for every type and format."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from record_strategies import (
    SETTINGS,
    cloud_summaries,
    clouds,
    jobs,
    normalised_summaries,
    records_of,
    storage_messages,
    summaries,
    syncs,
)

from apel.records import (
    CLOUD,
    CLOUD_SUMMARY,
    JOB,
    NORMALISED_SUMMARY,
    SUMMARY,
    SYNC,
    parse_message,
    render_car,
    render_message,
    render_star,
)


@SETTINGS
@given(records_of(jobs()))
def test_job_v03_round_trip(records):
    assert parse_message(render_message(JOB, records)).records == records


@SETTINGS
@given(records_of(jobs(dict_mode=True)))
def test_job_v04_round_trip(records):
    assert parse_message(render_message(JOB, records, dict_benchmark=True)).records == records


@SETTINGS
@given(records_of(summaries()))
def test_summary_v02_round_trip(records):
    text = render_message(SUMMARY, records, include_infrastructure_description=True)
    assert parse_message(text).records == records
    without = [dict(r, InfrastructureDescription="None") for r in records]
    assert parse_message(render_message(SUMMARY, without)).records == without


@SETTINGS
@given(records_of(summaries(dict_mode=True)))
def test_summary_v04_round_trip(records):
    text = render_message(SUMMARY, records, dict_benchmark=True, include_infrastructure_description=True)
    assert parse_message(text).records == records


@SETTINGS
@given(records_of(normalised_summaries()))
def test_normalised_summary_v03_round_trip(records):
    text = render_message(NORMALISED_SUMMARY, records, include_infrastructure_description=True)
    assert parse_message(text).records == records


@SETTINGS
@given(records_of(normalised_summaries(dict_mode=True)))
def test_normalised_summary_v04_round_trip(records):
    text = render_message(NORMALISED_SUMMARY, records, dict_benchmark=True,
                          include_infrastructure_description=True)
    assert parse_message(text).records == records


@SETTINGS
@given(records_of(syncs()))
def test_sync_round_trip(records):
    assert parse_message(render_message(SYNC, records)).records == records


@SETTINGS
@given(records_of(clouds()))
def test_cloud_round_trip(records):
    assert parse_message(render_message(CLOUD, records, decimal_cpu_count=True)).records == records


@SETTINGS
@given(records_of(cloud_summaries()))
def test_cloud_summary_round_trip(records):
    assert parse_message(render_message(CLOUD_SUMMARY, records)).records == records


@SETTINGS
@given(st.lists(jobs(), min_size=1, max_size=4))
def test_car_round_trip(records):
    assert parse_message(render_car(records)).records == records


@SETTINGS
@given(storage_messages())
def test_star_round_trip(message):
    records, attributes = message
    parsed = parse_message(render_star(records, attributes))
    assert parsed.records == records
    assert parsed.group_attributes == attributes
