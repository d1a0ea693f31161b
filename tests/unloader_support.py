"""The unloader's test environment: a database, its configs and the outgoing queue.

Shared by the unloader test files.
"""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Optional

from dirq.QueueSimple import QueueSimple

from apel.db.backend import load_backend
from apel.records import parse_message

_databases = itertools.count()
UNLOADER = str(Path(sys.executable).with_name("apeldbunloader"))
PUBLISHER = "/C=UK/O=eScience/OU=CLRC/L=RAL/CN=publisher.example.org"


def db_settings(kind: str, request, tmp_path: Path) -> dict:
    if kind == "mysql":
        from apel.db.mysql_backend import apply_schema

        mariadb = request.getfixturevalue("mariadb")  # a new database for every call
        args = mariadb.connect_args(mariadb.create_database(f"apel_unloader_{next(_databases)}"))
        apply_schema(args)
        return {"backend": "mysql", "hostname": args["host"], "port": str(args["port"]),
                "name": args["database"], "username": args["user"], "password": args["password"]}
    return {"backend": "sqlite", "name": str(tmp_path / "db" / "apel.sqlite3")}


class Env:
    """One database, its configs and the unloader's outgoing queue, all under tmp_path."""

    def __init__(self, base: Path, settings: dict) -> None:
        self.base = base
        self.settings = settings
        self.kind = settings["backend"]
        self.db_cfg = base / "db.cfg"
        self.db_cfg.write_text("[db]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        self.cfg = base / "unloader.cfg"
        self.logfile = base / "unloader.log"
        self.dir_location = base / "spool"
        self.outgoing = self.dir_location / "outgoing"
        self.db = load_backend(self.kind)(settings)
        self.db.connect()

    @property
    def mark(self) -> str:
        return self.db.placeholder

    def load(self, text: str) -> None:
        self.db.load_message(parse_message(text), PUBLISHER)

    def sql(self, statement: str, params: tuple = ()) -> None:
        with self.db.transaction() as tx:
            tx.execute(statement, params)

    def write_config(self, **options: object) -> Path:
        options.setdefault("dir_location", self.dir_location)
        lines = ["[unloader]"] + [f"{key} = {value}" for key, value in options.items() if value is not None]
        lines += ["[logging]", f"logfile = {self.logfile}", "level = INFO", "console = false"]
        self.cfg.write_text("\n".join(lines) + "\n")
        return self.cfg

    def unload(self, *extra: str, check: bool = True, **options: object) -> subprocess.CompletedProcess:
        self.write_config(**options)
        proc = subprocess.run([UNLOADER, "-d", str(self.db_cfg), "-c", str(self.cfg), *extra],
                              capture_output=True, text=True, timeout=60)
        if check:
            assert proc.returncode == 0, proc.stderr + self.log()
        return proc

    def log(self) -> str:
        return self.logfile.read_text() if self.logfile.exists() else ""

    def messages(self, clear: bool = True) -> list[str]:
        """Every queued message text, oldest first; removed from the queue if ``clear``."""
        if not self.outgoing.exists():
            return []
        queue = QueueSimple(str(self.outgoing))
        texts = []
        for name in list(queue):
            if queue.lock(name):
                texts.append(queue.get(name).decode("utf-8"))
                if clear:
                    queue.remove(name)
        return texts

    def last_sent(self) -> Optional[dt.datetime]:
        rows = self.db.query(f"SELECT UpdateTime FROM LastUpdated WHERE Type = {self.mark}", ["sent"])  # noqa: S608
        if not rows:
            return None
        value = rows[0][0]
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else value

    def set_last_sent(self, when: str) -> None:
        self.sql("DELETE FROM LastUpdated WHERE Type = 'sent'")
        self.sql(f"INSERT INTO LastUpdated (Type, UpdateTime) VALUES ('sent', {self.mark})", (when,))  # noqa: S608

    def fill_hss_from_summaries(self) -> None:
        """HybridSuperSummaries from Summaries, normalised ×10: super-summary rows without
        depending on the summariser."""
        self.sql(
            "INSERT INTO HybridSuperSummaries (SiteID, Month, Year, GlobalUserNameID, VOID, VOGroupID,"
            " VORoleID, SubmitHostID, Infrastructure, InfrastructureDescription, ServiceLevelType,"
            " ServiceLevel, NodeCount, Processors, EarliestEndTime, LatestEndTime, WallDuration,"
            " CpuDuration, NormalisedWallDuration, NormalisedCpuDuration, NumberOfJobs)"
            " SELECT SiteID, Month, Year, GlobalUserNameID, VOID, VOGroupID, VORoleID, SubmitHostID,"
            " InfrastructureType, InfrastructureDescription, ServiceLevelType, ServiceLevel, NodeCount,"
            " Processors, EarliestEndTime, LatestEndTime, WallDuration, CpuDuration, WallDuration * 10,"
            " CpuDuration * 10, NumberOfJobs FROM Summaries")

    def close(self) -> None:
        self.db.close()
