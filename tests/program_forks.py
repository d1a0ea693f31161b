"""Run one program's ``main()`` many times, each in a forked child, for the hostile-config test.

Starting a fresh interpreter per case costs 0.2-0.3 s of CPU (the imports), and the
hostile-config test has well over a thousand cases. This runner imports the program
once, then forks a child per case: the child is the real program (its ``main()`` with
its own ``sys.argv``, working directory, stdout and stderr files and default signal
dispositions), only without paying for the imports again. It also records which
options each run read, so the test can tell when the code reads an option the sample
configs do not show.

Reads one JSON request on stdin and writes one JSON list of results on stdout::

    {"module": "apel_bin.ssmsend", "prog": "ssmsend", "parallel": 4, "timeout": 60,
     "jobs": [{"argv": [...], "cwd": "...", "out": "...", "err": "...", "reads": "...",
               "stop_when": "/path/pidfile" or null}, ...]}

``stop_when``: a long-running service is sent SIGTERM once that file exists (it is then
ready) and is expected to stop by itself. A child still running after ``timeout``
seconds is killed and reported with ``timed_out``.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import signal
import sys
import time
import traceback


def _warm_up() -> None:
    """Import every module of the project, so no child pays for an import."""
    for package in ("ssm", "apel", "apel_bin"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if ".testkit" not in info.name:
                importlib.import_module(info.name)


def _record_reads(reads: list) -> None:
    from acctbase.config import ConfigFile

    original = ConfigFile.get

    def get(self, section, option, *args, **kwargs):
        reads.append([os.path.basename(self.path), section, option])
        return original(self, section, option, *args, **kwargs)

    ConfigFile.get = get


def _child(module, prog: str, job: dict, reads: list) -> None:
    """The program itself; never returns."""
    code = 1
    try:
        os.chdir(job["cwd"])
        for fd, path in ((1, job["out"]), (2, job["err"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = [prog, *job["argv"]]
        try:
            module.main()
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("text") prints the text, as the interpreter does
                print(exc.code, file=sys.stderr)
        except BaseException:  # what the interpreter would print: the test looks for it
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        with open(job["reads"], "w", encoding="utf-8") as handle:
            json.dump(reads, handle)
    finally:
        os._exit(code)


def _status(wait_status: int) -> int:
    return os.waitstatus_to_exitcode(wait_status)


def main() -> None:
    request = json.load(sys.stdin)
    _warm_up()
    reads: list = []
    _record_reads(reads)
    module = importlib.import_module(request["module"])
    jobs = list(enumerate(request["jobs"]))
    results: list = [None] * len(jobs)
    running: dict[int, tuple[int, dict, float, bool]] = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    sys.stdout.flush()
    while jobs or running:
        while jobs and len(running) < request["parallel"]:
            index, job = jobs.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(module, request["prog"], job, reads)
            running[pid] = (index, job, time.monotonic(), False)
        _reap(running, results, request["timeout"])
    json.dump(results, sys.stdout)


def _reap(running: dict, results: list, timeout: float) -> None:
    """Collect children that ended; stop ready services; kill ones that overran."""
    time.sleep(0.005)
    for pid, (index, job, started, stopped) in list(running.items()):
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            del running[pid]
            results[index] = {"status": _status(wait_status), "stopped": stopped, "timed_out": False}
            continue
        if not stopped and job.get("stop_when") and os.path.isfile(job["stop_when"]):
            os.kill(pid, signal.SIGTERM)
            running[pid] = (index, job, started, True)
        elif time.monotonic() - started > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            del running[pid]
            results[index] = {"status": -9, "stopped": stopped, "timed_out": True}


if __name__ == "__main__":
    main()
