"""Realistic, seedable sample accounting records for the quick start and benchmarks.

The spread follows what a central APEL server sees: a handful of sites of very
different sizes, the LHC VOs plus small ones, FQANs with production and user
roles, HEPSPEC, HEPscore23 and legacy si2k benchmarks (in the senders' own letter
case), multi-core and single-core jobs, and jobs ending over several months.
The same seed always gives the same records, so runs can be compared.
"""

from __future__ import annotations

import datetime as dt
import random
import zlib
from collections.abc import Iterator
from typing import Optional

from apel.records.model import Record

SITES = (  # name, relative weight, submit hosts, benchmark type, benchmark range
    ("RAL-LCG2", 30, ("arc-ce01.gridpp.rl.ac.uk:2811/nordugrid-Condor-grid3000M",
                      "arc-ce02.gridpp.rl.ac.uk:2811/nordugrid-Condor-grid3000M"), "HEPSPEC", (10.0, 14.0)),
    ("UKI-NORTHGRID-MAN-HEP", 12, ("ce01.tier2.hep.manchester.ac.uk:8443/cream-pbs-long",), "HEPscore23",
     (14.0, 19.0)),
    ("CERN-PROD", 40, ("ce503.cern.ch:9619/ce503.cern.ch-condor", "ce504.cern.ch:9619/ce504.cern.ch-condor"),
     "HEPscore23", (16.0, 22.0)),
    ("INFN-T1", 15, ("ce01-lcg.cr.cnaf.infn.it:9619/ce01-lcg.cr.cnaf.infn.it-condor",), "HEPSPEC",
     (9.5, 13.5)),
    ("IN2P3-CC", 10, ("cccreamceli05.in2p3.fr:8443/cream-sge-long",), "si2k", (2400.0, 3200.0)),
    ("GRIF-LAL", 3, ("grid36.lal.in2p3.fr:8443/cream-pbs-grid",), "Si2K", (2000.0, 2600.0)),
)
# Sites that publish monthly summaries from their own APEL client instead of jobs.
SUMMARY_SITES = (
    ("UKI-SCOTGRID-GLASGOW", 20, ("svr009.gla.scotgrid.ac.uk:2811/nordugrid-Condor-condor_q2d",), "HEPSPEC",
     (11.0, 15.0)),
    ("NCG-INGRID-PT", 5, ("ce02.ncg.ingrid.pt:8443/cream-slurm-atlas",), "HEPscore23", (12.0, 16.0)),
    ("BEgrid-ULB-VUB", 8, ("cream02.iihe.ac.be:8443/cream-pbs-cms",), "hepspec", (9.0, 12.0)),
    ("TRIUMF-LCG2", 12, ("ce1.triumf.ca:9619/ce1.triumf.ca-condor",), "si2k", (2500.0, 3100.0)),
)
VOS = (  # vo, weight, groups, roles
    ("atlas", 35, ("/atlas", "/atlas/uk", "/atlas/lcg1"), ("Role=production", "Role=pilot", "Role=NULL")),
    ("cms", 30, ("/cms", "/cms/uscms"), ("Role=production", "Role=pilot", "Role=NULL")),
    ("lhcb", 15, ("/lhcb",), ("Role=pilot", "Role=user")),
    ("alice", 12, ("/alice",), ("Role=NULL",)),
    ("dteam", 3, ("/dteam",), ("Role=NULL",)),
    ("ops", 2, ("/ops",), ("Role=lcgadmin",)),
    ("biomed", 3, ("/biomed",), ("Role=NULL",)),
)
CLOUD_SITES = (
    ("CESGA", "cloud.cesga.es", "caso/5.2.1 (OpenStack)"),
    ("IFCA-LCG2", "ifca-cloud.ifca.es", "caso/5.2.1 (OpenStack)"),
    ("UPV-GRyCAP", "cloud.i3m.upv.es", "OpenNebula 6.4"),
)
CLOUD_VOS = ("fedcloud.egi.eu", "vo.access.egi.eu", "training.egi.eu", "biomed")


def _weighted(rng: random.Random, items: tuple) -> tuple:
    return rng.choices(items, weights=[item[1] for item in items])[0]


def _user(rng: random.Random, vo: str) -> str:
    number = min(int(rng.paretovariate(0.6)), 399)
    return f"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN={vo}user{number:03d}/CN=Robot: {vo} {number}"


def _benchmark(host: str, low: float, high: float) -> float:
    """A CE's benchmark: fixed per host (sites benchmark their node types, not each job)."""
    return round(low + (high - low) * (zlib.crc32(host.encode()) % 1000) / 1000, 3)


def _months_back(when: dt.datetime, count: int) -> dt.datetime:
    year, month = when.year, when.month - count
    while month < 1:
        month += 12
        year -= 1
    return when.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0)


def job_records(
    count: int, seed: int = 1, now: Optional[dt.datetime] = None, months: int = 3
) -> Iterator[Record]:
    """``count`` individual job records (APEL-individual-job-message fields)."""
    rng = random.Random(seed)
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    window_start = _months_back(now, months - 1)
    window = int((now - window_start).total_seconds())
    for index in range(count):
        site, _, hosts, bench_type, (low, high) = _weighted(rng, SITES)
        vo, _, groups, roles = _weighted(rng, VOS)
        group, role = rng.choice(groups), rng.choice(roles)
        processors = rng.choice((1, 1, 8, 8, 8, 4, 16))
        wall = min(int(rng.lognormvariate(9.0, 1.1)), 7 * 86400)
        efficiency = rng.uniform(0.3, 0.98)
        end = window_start + dt.timedelta(seconds=rng.randrange(wall + 1, window))
        start = end - dt.timedelta(seconds=wall)
        host = rng.choice(hosts)
        yield {
            "Site": site,
            "SubmitHost": host,
            "MachineName": host.split(":")[0],
            "Queue": host.rsplit("-", 1)[-1],
            "LocalJobId": f"{seed}.{index}.{rng.randrange(10**9)}",
            "LocalUserId": f"{vo}{rng.randrange(1, 60):03d}",
            "GlobalUserName": _user(rng, vo),
            "FQAN": f"{group}/{role}/Capability=NULL",
            "VO": vo,
            "VOGroup": group,
            "VORole": role,
            "WallDuration": wall,
            "CpuDuration": int(wall * processors * efficiency),
            "Processors": processors,
            "NodeCount": 1,
            "StartTime": start,
            "EndTime": end,
            "InfrastructureDescription": "APEL-ARC-HTCONDOR",
            "InfrastructureType": "grid",
            "MemoryReal": rng.randrange(500_000, 4_000_000),
            "MemoryVirtual": rng.randrange(1_000_000, 8_000_000),
            "ServiceLevelType": bench_type,
            "ServiceLevel": _benchmark(host, low, high),
        }


def summary_records(
    count: int, seed: int = 2, now: Optional[dt.datetime] = None, months: int = 3
) -> Iterator[Record]:
    """``count`` per-site monthly summaries (APEL-summary-job-message v0.2 fields),
    as sent by sites that publish summaries instead of individual jobs."""
    rng = random.Random(seed)
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    for _ in range(count):
        site, _, hosts, bench_type, (low, high) = _weighted(rng, SUMMARY_SITES)
        vo, _, groups, roles = _weighted(rng, VOS)
        month_start = _months_back(now, rng.randrange(months))
        month_end = min(_months_back(month_start + dt.timedelta(days=40), 0), now)
        jobs = rng.randrange(1, 5000)
        wall = jobs * rng.randrange(600, 40000)
        earliest = month_start + dt.timedelta(seconds=rng.randrange(0, 3 * 86400))
        latest = max(earliest, month_end - dt.timedelta(seconds=rng.randrange(0, 86400)))
        yield {
            "Site": site,
            "Month": month_start.month,
            "Year": month_start.year,
            "GlobalUserName": _user(rng, vo),
            "VO": vo,
            "VOGroup": rng.choice(groups),
            "VORole": rng.choice(roles),
            "SubmitHost": rng.choice(hosts),
            "InfrastructureType": "grid",
            "ServiceLevelType": bench_type,
            "ServiceLevel": round(rng.uniform(low, high), 3),
            "NodeCount": 1,
            "Processors": rng.choice((1, 8)),
            "EarliestEndTime": earliest,
            "LatestEndTime": latest,
            "WallDuration": wall,
            "CpuDuration": int(wall * rng.uniform(0.4, 0.95)),
            "NumberOfJobs": jobs,
        }


def cloud_records(
    count: int, seed: int = 3, now: Optional[dt.datetime] = None, months: int = 3
) -> Iterator[Record]:
    """``count`` cloud VM usage records: VMs are reported several times while they
    run (cumulative durations), some span month boundaries and some complete."""
    rng = random.Random(seed)
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    window_start = _months_back(now, months - 1)
    produced = 0
    vm_index = 0
    while produced < count:
        site, service, cloud_type = rng.choice(CLOUD_SITES)
        vo = rng.choice(CLOUD_VOS)
        cpus = rng.choice((1, 2, 4, 8))
        window = int((now - window_start).total_seconds())
        start = window_start + dt.timedelta(seconds=rng.randrange(0, window))
        reports = rng.randrange(1, 5)
        elapsed = 0
        vm_index += 1
        for report in range(reports):
            if produced >= count:
                break
            elapsed += rng.randrange(3600, 20 * 86400)
            measured = start + dt.timedelta(seconds=elapsed)
            if measured > now:
                break
            completed = report == reports - 1 and rng.random() < 0.5
            yield {
                "RecordCreateTime": measured,
                "VMUUID": f"{seed:02d}{vm_index:08d}-7f2c-4e1a-9d4b-{rng.randrange(16**12):012x}",
                "SiteName": site,
                "CloudComputeService": service,
                "MachineName": f"vm-{vm_index}",
                "LocalUserId": f"u{rng.randrange(1000):04d}",
                "LocalGroupId": f"g{rng.randrange(50):03d}",
                "GlobalUserName": _user(rng, vo),
                "FQAN": f"/{vo}/Role=NULL/Capability=NULL",
                "Status": "completed" if completed else "started",
                "StartTime": start,
                "EndTime": measured if completed else None,
                "SuspendDuration": 0,
                "WallDuration": elapsed,
                "CpuDuration": int(elapsed * cpus * rng.uniform(0.2, 0.9)),
                "CpuCount": float(cpus),
                "NetworkType": "None",
                "NetworkInbound": rng.randrange(0, 50),
                "NetworkOutbound": rng.randrange(0, 50),
                "PublicIPCount": rng.randrange(0, 2),
                "Memory": cpus * 2,
                "Disk": rng.choice((20, 40, 80)),
                "BenchmarkType": "HEPSPEC",
                "Benchmark": round(rng.uniform(9.0, 14.0), 3),
                "StorageRecordId": "None",
                "ImageId": rng.choice(("ubuntu-22.04", "almalinux-9", "rocky-9")),
                "CloudType": cloud_type,
            }
            produced += 1
