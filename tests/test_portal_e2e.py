"""The whole portal path through a real ActiveMQ over TLS, as operators run it.

A site's ssmsend sends jobs, summaries and cloud records to the server's ssmreceive;
apeldbloader, apelsummariser and apeldbunloader run there; a second ssmsend (its own
sender.cfg, the server's certificate) sends the published super summaries and cloud
summaries to another queue, where a receiver playing the portal stores them and its
own apeldbloader loads them into a second database. The portal must then hold exactly
the server's summaries. This is also the quick start's own code path.
"""

from __future__ import annotations

import subprocess

import pytest

from apel.db import load_backend
from apel.testkit.quickstart import BIN, Quickstart

SUPER_SUMMARY_COLUMNS = (
    "Site, Month, Year, GlobalUserName, VO, VOGroup, VORole, SubmitHost, InfrastructureType, "
    "ServiceLevelType, ServiceLevel, NodeCount, Processors, EarliestEndTime, LatestEndTime, "
    "WallDuration, CpuDuration, NumberOfJobs"
)
CLOUD_SUMMARY_COLUMNS = (
    "SiteName, CloudComputeService, Month, Year, GlobalUserName, VO, VOGroup, VORole, Status, "
    "ImageId, EarliestStartTime, LatestStartTime, WallDuration, CpuDuration, NetworkInbound, "
    "NetworkOutbound, Memory, Disk, BenchmarkType, Benchmark, NumberOfVMs"
)


def _rows(backend, view: str, columns: str) -> list[tuple]:
    rows = backend.query(f"SELECT {columns} FROM {view}", ())  # noqa: S608 - fixed names
    return sorted(tuple("" if v is None else str(v) for v in row) for row in rows)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("use_mariadb", [False, True], ids=["sqlite", "mariadb"])
def test_portal_receives_exactly_the_servers_summaries(tmp_path, use_mariadb):
    server = Quickstart(str(tmp_path / "work"), use_mariadb=use_mariadb, seed=11)
    server.prepare()
    try:
        server.start_services()
        server.write_configs()
        server.create_database()
        server.send_and_receive(server.queue_site_messages())
        server.load_summarise_unload()
        published = server.count("server/outgoing")
        assert published > 0

        portal_identity = server.pki.host("portal", cn="portal.example.org")
        server.write_hop("portal-", server.server, portal_identity, "server/outgoing", "portal/spool",
                         "/queue/apel.portal")
        server.write_loader("portal-", "portal/spool")
        portal_db = server.etc("portal-db.cfg")
        with open(portal_db, "w", encoding="utf-8") as handle:
            handle.write(f"[db]\nbackend: sqlite\nname: {server.workdir}/portal/apel.sqlite\n")
        server.send_and_receive(published, prefix="portal-", spool="portal/spool")
        assert server.count("server/outgoing") == 0, "the second ssmsend must drain the server's queue"
        loaded = subprocess.run(
            [f"{BIN}/apeldbloader", "-d", portal_db, "-c", server.etc("portal-loader.cfg"), "--once"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert loaded.returncode == 0, loaded.stderr
        assert server.count("portal/spool/reject") == 0

        with server.backend() as central, load_backend("sqlite")(
            {"name": f"{server.workdir}/portal/apel.sqlite"}
        ) as portal:
            central_supers = _rows(central, "VSuperSummaries", SUPER_SUMMARY_COLUMNS)
            portal_summaries = _rows(portal, "VSummaries", SUPER_SUMMARY_COLUMNS)
            central_clouds = _rows(central, "VCloudSummaries", CLOUD_SUMMARY_COLUMNS)
            portal_clouds = _rows(portal, "VCloudSummaries", CLOUD_SUMMARY_COLUMNS)
    finally:
        server.stop_services()

    assert len(central_supers) > 50 and len(central_clouds) > 10
    assert portal_summaries == central_supers
    assert portal_clouds == central_clouds
