"""Every option of every program's config files, set to hostile values: one line, never a traceback.

Each program (ssmsend, ssmreceive, apeldbloader, apelsummariser, apeldbunloader,
apelauth) is run with a working configuration in which one option at a time is set
to a hostile value: empty, blank, zero, negative, nan, inf, huge, a word where a
number or path belongs, a directory, a missing path. The options are those of the
sample configs in ``conf/`` (commented-out ones too) plus every option the code read
while running the base configuration, so a new option is covered without touching
this file.

A value an option refuses must end the run with exit status 1 and exactly one line on
stderr naming the file, ``[section] option`` and what is allowed. A value an option
legitimately takes (listed in ``ACCEPTED``) may let the program run on; it must then
end as it does with a good configuration (exit 0, or one line and exit 1 when the
unreachable database or broker stops it), and never with a traceback.

The programs run in forked children of a runner that imported them once
(``program_forks.py``), in a network namespace of their own when ``unshare`` allows it,
so a host name such as ``nan`` cannot reach a real resolver. Nothing listens on the
loopback ports the configs name: brokers, databases and GOCDB all refuse at once.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "conf")
RUNNER = os.path.join(ROOT, "tests", "program_forks.py")
CLOSED_PORT = 1  # nothing listens there (in the test's own network namespace, nothing listens at all)

HOSTILE = {
    "empty": "",
    "blank": "   ",
    "zero": "0",
    "negative": "-1",
    "nan": "nan",
    "inf": "inf",
    "huge float": "1e400",
    "huge int": "99999999999999999999",
    "word": "not-a-value",
    "directory": "{case}/a-directory",
    "missing path": "{case}/missing/sub/path",
}
ALL = frozenset(HOSTILE)
EMPTY = frozenset({"empty", "blank"})
NOT_EMPTY = ALL - EMPTY
ZERO = frozenset({"zero"})  # booleans (0 is false) and numbers whose range starts at 0
WORDS = frozenset({"zero", "negative", "nan", "inf", "huge float", "huge int", "word"})
HOST_NAMES = WORDS - {"negative"}  # "-1" is no host name; "nan" is
NEW_PATH = ALL - EMPTY - {"directory"}  # a file to create: relative words are names in the cwd

SSM_BROKER = {
    "bdii": EMPTY, "network": ALL, "host": HOST_NAMES, "use_ssl": ZERO, "verify_broker_cert": ZERO,
    "broker_capath": {"directory"}, "heartbeat": ZERO,
}
LOGGING = {"logfile": ALL - {"directory"}, "console": ZERO}


def _accepted(file: str, sections: dict[str, dict[str, frozenset]]) -> dict:
    return {(file, section, option): set(kinds)
            for section, options in sections.items() for option, kinds in options.items()}


# (file, section, option) -> the hostile kinds the option legitimately takes (an
# empty bdii or server_cert means "not used", 0 is a valid heartbeat, any text is a
# valid DN, VO or password, ...). Every other kind must be refused in one line naming
# the option.
ACCEPTED: dict[tuple[str, str, str], set[str]] = {
    **_accepted("sender.cfg", {
        "broker": {**SSM_BROKER, "reconnect_attempts": ZERO},
        "certificates": {"capath": {"directory"}, "server_cert": EMPTY, "verify_server_cert": ZERO},
        "messaging": {"destination": NOT_EMPTY, "path": NOT_EMPTY, "max_message_size": ZERO,
                      "sign_workers": ZERO, "persistent": ZERO},
        "logging": LOGGING,
    }),
    **_accepted("receiver.cfg", {
        "receiver": {"subscribe_all": ZERO},
        "broker": SSM_BROKER,
        "certificates": {"capath": {"directory"}, "check_crls": ZERO},
        "messaging": {"destination": ALL, "path": NOT_EMPTY},
        "logging": LOGGING,
        "daemon": {"pidfile": NEW_PATH},
    }),
    **_accepted("db.cfg", {"db": {
        "hostname": HOST_NAMES | EMPTY, "name": ALL, "username": ALL, "password": ALL, "socket": ALL,
        "timeout": ZERO, "local_infile": ZERO,
    }}),
    **_accepted("loader.cfg", {
        "loader": {"msgpath": NOT_EMPTY, "pidfile": NEW_PATH, "interval": ZERO, "save_messages": ZERO},
        "logging": LOGGING,
    }),
    **_accepted("summariser.cfg", {
        "summariser": {"pidfile": NEW_PATH, "delete_stale_summaries": ZERO,
                       "stale_summary_window_days": ZERO},
        "logging": LOGGING,
    }),
    **_accepted("unloader.cfg", {
        "unloader": {
            "dir_location": NOT_EMPTY, "gap_start": EMPTY, "gap_end": EMPTY, "include_vos": ALL,
            "exclude_vos": ALL, "local_jobs": ZERO, "withhold_dns": ZERO, "dict_benchmark_type": ZERO,
            "include_infrastructure_description": ZERO, "send_ur": ZERO, "decimal_cpu_count": ZERO,
            # Clamped to 1..5000, and a value that is not a number means the default 1000
            # (with a warning): the existing unloader's rule, kept for old configs.
            "records_per_message": ALL,
        },
        "logging": LOGGING,
    }),
    **_accepted("auth.cfg", {
        "auth": {"extra-dns": ALL - {"directory"}, "banned-dns": ALL - {"directory"}, "allowed-dns": WORDS,
                 "proxy": EMPTY, "expire_hours": ZERO, "max_shrink": ZERO},
        "logging": LOGGING,
    }),
}


@dataclass
class Program:
    name: str
    module: str
    files: dict[str, str]  # command-line flag -> config file name
    args: list[str] = field(default_factory=list)
    stop_when: Optional[str] = None  # (section, option) naming a file that says "ready"
    base_outcome: tuple[int, int] = (1, 1)  # exit status and stderr lines with the base configs
    base_failure: str = ""  # what the one line says then
    sections: dict[str, Callable[[str, Shared], dict]] = field(default_factory=dict)


@dataclass
class Shared:
    """Files every case may use: certificates, CA directory, DN list."""

    cert: str
    key: str
    capath: str
    dns: str
    server_cert: str


def sender_cfg(case: str, shared: Shared) -> dict:
    return {
        "sender": {"protocol": "STOMP"},
        "broker": {
            "host": "127.0.0.1", "port": str(CLOSED_PORT), "use_ssl": "true", "verify_broker_cert": "true",
            "broker_capath": shared.capath, "connect_timeout": "5", "heartbeat": "5000",
            "reconnect_attempts": "0",
        },
        "certificates": {
            "certificate": shared.cert, "key": shared.key, "capath": shared.capath,
            "server_cert": shared.server_cert, "verify_server_cert": "true",
        },
        "messaging": {
            "destination": "/queue/hostile", "path": f"{case}/outgoing", "path_type": "dirq",
            "send_window": "20", "receipt_timeout": "30", "max_message_size": "10485760",
            "sign_workers": "1", "persistent": "true",
        },
        "logging": {"logfile": f"{case}/log/ssmsend.log", "level": "INFO", "console": "false"},
    }


def receiver_cfg(case: str, shared: Shared) -> dict:
    return {
        "receiver": {"protocol": "STOMP", "subscribe_all": "false", "dn_refresh": "600",
                     "batch_size": "50", "prefetch": "50"},
        "broker": {
            "host": "127.0.0.1", "port": str(CLOSED_PORT), "use_ssl": "true", "verify_broker_cert": "true",
            "broker_capath": shared.capath, "connect_timeout": "5", "heartbeat": "5000",
        },
        "certificates": {"certificate": shared.cert, "key": shared.key, "capath": shared.capath,
                         "check_crls": "false"},
        "messaging": {"destination": "/queue/hostile", "path": f"{case}/spool"},
        "logging": {"logfile": f"{case}/log/ssmreceive.log", "level": "INFO", "console": "false"},
        "daemon": {"pidfile": f"{case}/run/ssmreceive.pid"},
    }


def db_cfg(case: str, shared: Shared) -> dict:
    return {"db": {
        "backend": "mysql", "hostname": "127.0.0.1", "port": str(CLOSED_PORT), "name": "apel",
        "username": "apel", "password": "secret", "type": "cpu", "connect_timeout": "5",
    }}


def loader_cfg(case: str, shared: Shared) -> dict:
    return {
        "loader": {
            "msgpath": f"{case}/spool", "pidfile": f"{case}/run/loader.pid", "interval": "5",
            "save_messages": "false", "workers": "1", "lock_timeout": "60", "backoff_max": "1",
        },
        "logging": {"logfile": f"{case}/log/loader.log", "level": "INFO", "console": "false"},
    }


def summariser_cfg(case: str, shared: Shared) -> dict:
    return {
        "summariser": {"pidfile": f"{case}/run/summariser.pid", "delete_stale_summaries": "true",
                       "stale_summary_window_days": "7", "progress_interval": "30"},
        "logging": {"logfile": f"{case}/log/summariser.log", "level": "INFO", "console": "false"},
    }


def unloader_cfg(case: str, shared: Shared) -> dict:
    return {
        "unloader": {
            "dir_location": f"{case}/spool", "table_name": "VJobRecords", "interval": "latest",
            "gap_start": "2026-01-01", "gap_end": "2026-01-31", "records_per_message": "1000",
            "include_vos": "atlas, cms", "exclude_vos": "dteam", "local_jobs": "true",
            "withhold_dns": "false", "dict_benchmark_type": "false",
            "include_infrastructure_description": "false", "send_ur": "false", "decimal_cpu_count": "false",
        },
        "logging": {"logfile": f"{case}/log/unloader.log", "level": "INFO", "console": "false"},
    }


def auth_cfg(case: str, shared: Shared) -> dict:
    return {
        "auth": {
            "gocdb_url": f"http://127.0.0.1:{CLOSED_PORT}/gocdbpi/public/?method=get_service_endpoint",
            "extra-dns": f"{case}/extra-dns", "banned-dns": f"{case}/banned-dns",
            "allowed-dns": f"{case}/dns", "proxy": f"http://127.0.0.1:{CLOSED_PORT}",
            "expire_hours": "0", "max_shrink": "0.5", "timeout": "5", "max_pages": "100",
            "max_page_bytes": "16777216",
        },
        "logging": {"logfile": f"{case}/log/apelauth.log", "level": "INFO", "console": "false"},
    }


DB_DOWN = "Can't connect to MySQL server"
PROGRAMS = [
    Program("ssmsend", "apel_bin.ssmsend", {"-c": "sender.cfg"}, base_outcome=(0, 0),
            sections={"sender.cfg": sender_cfg}),
    Program("ssmreceive", "apel_bin.ssmreceive", {"-c": "receiver.cfg"}, args=["--foreground"],
            stop_when="daemon/pidfile", base_outcome=(0, 0), sections={"receiver.cfg": receiver_cfg}),
    Program("apeldbloader", "apel_bin.apeldbloader", {"-c": "loader.cfg", "-d": "db.cfg"}, args=["--once"],
            base_failure=DB_DOWN, sections={"loader.cfg": loader_cfg, "db.cfg": db_cfg}),
    Program("apelsummariser", "apel_bin.apelsummariser", {"-c": "summariser.cfg", "-d": "db.cfg"},
            base_failure=DB_DOWN, sections={"summariser.cfg": summariser_cfg, "db.cfg": db_cfg}),
    Program("apeldbunloader", "apel_bin.apeldbunloader", {"-c": "unloader.cfg", "-d": "db.cfg"},
            base_failure=DB_DOWN, sections={"unloader.cfg": unloader_cfg, "db.cfg": db_cfg}),
    Program("apelauth", "apel_bin.apelauth", {"-c": "auth.cfg"}, base_failure="Connection refused",
            sections={"auth.cfg": auth_cfg}),
]
PROGRAM_BY_NAME = {program.name: program for program in PROGRAMS}

COMMENTED_OPTION = re.compile(r"#([a-z_][a-z0-9_-]*)\s*[:=]", re.IGNORECASE)


def sample_options(name: str) -> set[tuple[str, str]]:
    """(section, option) of every option in ``conf/<name>``, the commented-out ones too."""
    options = set()
    section = None
    with open(os.path.join(CONF, name), encoding="utf-8") as handle:
        for line in handle:
            header = re.match(r"\[([^\]]+)\]", line)
            if header:
                section = header.group(1)
                continue
            commented = COMMENTED_OPTION.match(line)
            plain = re.match(r"([a-z_][a-z0-9_-]*)\s*[:=]", line, re.IGNORECASE)
            match = commented or plain
            if section and match:
                options.add((section, match.group(1)))
    return options


@dataclass
class Case:
    program: Program
    directory: str
    target: Optional[tuple[str, str, str]]  # (file, section, option) made hostile, None: the base run
    kind: Optional[str]

    @property
    def label(self) -> str:
        if self.target is None:
            return f"{self.program.name} (base config)"
        file, section, option = self.target
        return f"{self.program.name} {file} [{section}] {option} = {self.kind}"


def write_case(case: Case, shared: Shared) -> dict:
    """Write the case's config files; return the runner job."""
    os.makedirs(os.path.join(case.directory, "a-directory"))
    argv = []
    values = {}
    for flag, name in case.program.files.items():
        sections = case.program.sections[name](case.directory, shared)
        if case.target and case.target[0] == name:
            _, section, option = case.target
            value = HOSTILE[case.kind].format(case=case.directory)
            sections.setdefault(section, {})[option] = value
        values[name] = sections
        path = os.path.join(case.directory, name)
        parser = configparser.RawConfigParser()
        parser.optionxform = str
        parser.read_dict(sections)
        with open(path, "w", encoding="utf-8") as handle:
            parser.write(handle)
        argv += [flag, path]
    if case.program.name == "ssmreceive":
        argv += ["-d", shared.dns]
    stop_when = None
    if case.program.stop_when:
        section, option = case.program.stop_when.split("/")
        stop_when = next(iter(values.values()))[section][option].strip() or None
        stop_when = os.path.join(case.directory, stop_when) if stop_when else None
    return {
        "argv": argv + case.program.args, "cwd": case.directory, "stop_when": stop_when,
        "out": os.path.join(case.directory, "stdout"), "err": os.path.join(case.directory, "stderr"),
        "reads": os.path.join(case.directory, "reads.json"),
    }


def network_isolation() -> list[str]:
    """The command prefix that gives the runner its own network namespace (loopback only)."""
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False) \
        if os.path.exists("/usr/bin/unshare") else None
    if probe is None or probe.returncode != 0:
        return []
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh"]


def run_cases(program: Program, cases: list[Case], shared: Shared, parallel: int) -> list[dict]:
    jobs = [write_case(case, shared) for case in cases]
    request = {"module": program.module, "prog": program.name, "parallel": parallel, "timeout": 60,
               "jobs": jobs}
    result = subprocess.run(
        network_isolation() + [sys.executable, RUNNER], input=json.dumps(request),
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    for case, job, outcome in zip(cases, jobs, outcomes):
        outcome["stdout"] = _read(job["out"])
        outcome["stderr"] = _read(job["err"])
        reads = _read(job["reads"])
        outcome["reads"] = {tuple(item) for item in json.loads(reads)} if reads else set()
        outcome["case"] = case
    return outcomes


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


@pytest.fixture(scope="module")
def shared(tmp_path_factory, pki) -> Shared:
    base = tmp_path_factory.mktemp("hostile-shared")
    host = pki.host("hostile-host")
    server = pki.host("hostile-server")
    dns = base / "dns"
    dns.write_text(host.dn + "\n")
    return Shared(host.cert_path, host.key_path, pki.capath, str(dns), server.cert_path)


def _problem(outcome: dict) -> Optional[str]:
    """What is wrong with one case's outcome, or None."""
    case = outcome["case"]
    stderr, stdout, status = outcome["stderr"], outcome["stdout"], outcome["status"]
    if outcome["timed_out"]:
        return "did not finish"
    if "Traceback" in stderr + stdout:
        return "traceback:\n" + stderr[-1500:]
    if status == 1:
        lines = stderr.splitlines()
        if len(lines) != 1:
            return f"exit 1 with {len(lines)} lines on stderr: {stderr[-800:]!r} (stdout {stdout[-300:]!r})"
        if "internal error" in lines[0]:
            return f"internal error: {lines[0]}"
    file, section, option = case.target
    accepted = ACCEPTED.get(case.target, set())
    if case.kind in accepted:
        if status not in (0, 1, 2):
            return f"exit status {status}: {stderr!r}"
        return None
    if status != 1:
        return f"accepted (exit {status}) but not listed in ACCEPTED: {stderr!r}"
    line = stderr.strip()
    if f"[{section}] {option}" not in line or file not in line:
        return f"the line does not name {file} [{section}] {option}: {line}"
    return None


def _hostile_cases(program: Program, reads: set, tmp_path) -> tuple[list[Case], set]:
    """One case per option and hostile kind; and the options read but not in ``conf/``."""
    cases, undocumented = [], set()
    for name in program.files.values():
        documented = sample_options(name)
        read = {(section, option) for file, section, option in reads if file == name}
        undocumented |= {(name, section, option) for section, option in read - documented}
        for section, option in sorted(documented | read):
            for kind in HOSTILE:
                directory = tmp_path / f"{program.name}-{len(cases)}"
                directory.mkdir()
                cases.append(Case(program, str(directory), (name, section, option), kind))
    return cases, undocumented


def _run_all(batches: dict, shared: Shared, parallel: int) -> dict:
    """Run every program's cases, the programs side by side (most cases wait, not compute)."""
    with ThreadPoolExecutor(len(batches)) as pool:
        futures = {name: pool.submit(run_cases, PROGRAM_BY_NAME[name], cases, shared, parallel)
                   for name, cases in batches.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.slow  # hundreds of program runs: about 40 s on 2 cores
def test_every_option_of_every_program_refuses_hostile_values_in_one_line(shared, tmp_path):
    base_cases = {}
    for program in PROGRAMS:
        (tmp_path / f"{program.name}-base").mkdir()
        base_cases[program.name] = [Case(program, str(tmp_path / f"{program.name}-base"), None, None)]
    hostile, undocumented = {}, set()
    for name, [base] in _run_all(base_cases, shared, 1).items():
        program = PROGRAM_BY_NAME[name]
        # The base configuration is good: the run ends as the unreachable services make it end.
        assert (base["status"], base["stderr"].count("\n")) == program.base_outcome, base["stderr"]
        assert program.base_failure in base["stderr"] and "Traceback" not in base["stdout"], base["stderr"]
        assert base["reads"], "the runner did not record the options read"
        hostile[name], missing = _hostile_cases(program, base["reads"], tmp_path)
        undocumented |= missing
    assert not undocumented, f"options read by the code but missing from conf/: {sorted(undocumented)}"
    failures = []
    for outcomes in _run_all(hostile, shared, 3).values():
        failures += [f"{outcome['case'].label}: {problem}"
                     for outcome in outcomes if (problem := _problem(outcome))]
    total = sum(len(cases) for cases in hostile.values())
    assert total > 1000
    assert not failures, f"{len(failures)} of {total} cases failed:\n" + "\n".join(failures)
