"""A signal that arrives while a service is still starting never kills it uncleanly.

systemd (or an operator, or a test) may stop a service the moment it has started.
``ssmreceive`` and ``apeldbloader`` catch SIGTERM and SIGINT from the first line of
``main``, before their configuration is read: a stop requested while they start gives
exit 0 with no pidfile left, and a SIGHUP (reload) then is kept for later instead of
killing them. The signals are sent when the log file appears, which each program
creates while reading its configuration, i.e. well before it is ready; this is an
order of events, not a race against the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from loader_support import LOADER
from ssm_support import SSMRECEIVE, write_dns, write_receiver_cfg

pytestmark = pytest.mark.timeout(120)


def _receiver(tmp_path: Path, pki) -> tuple[list[str], Path, Path]:
    identity = pki.host("early-signals")
    cfg = write_receiver_cfg(str(tmp_path / "receiver.cfg"), identity, pki.capath, 1, "/queue/early",
                             str(tmp_path / "spool"), host="127.0.0.1")  # nothing listens on port 1
    dns = write_dns(str(tmp_path / "dns"), [identity.dn])
    return [SSMRECEIVE, "-c", cfg, "-d", dns, "--foreground"], tmp_path / "ssmreceive.log", \
        tmp_path / "ssmreceive.pid"


def _loader(tmp_path: Path, _pki) -> tuple[list[str], Path, Path]:
    (tmp_path / "db.cfg").write_text(f"[db]\nbackend = sqlite\nname = {tmp_path / 'apel.sqlite3'}\n")
    (tmp_path / "loader.cfg").write_text(
        f"[loader]\nmsgpath = {tmp_path / 'spool'}\npidfile = {tmp_path / 'loader.pid'}\ninterval = 1\n"
        f"[logging]\nlogfile = {tmp_path / 'loader.log'}\nlevel = INFO\nconsole = false\n"
    )
    command = [LOADER, "-d", str(tmp_path / "db.cfg"), "-c", str(tmp_path / "loader.cfg"), "--foreground"]
    return command, tmp_path / "loader.log", tmp_path / "loader.pid"


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.001)


PROGRAMS = {"ssmreceive": _receiver, "apeldbloader": _loader}


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_while_starting_exits_0_and_leaves_no_pidfile(tmp_path, pki, program, signum):
    command, logfile, pidfile = PROGRAMS[program](tmp_path, pki)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(logfile, proc)
        proc.send_signal(signum)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err == ""
    assert not pidfile.exists()
    assert signal.Signals(signum).name in logfile.read_text()


@pytest.mark.parametrize("program", PROGRAMS)
def test_reload_signal_while_starting_does_not_kill(tmp_path, pki, program):
    command, logfile, pidfile = PROGRAMS[program](tmp_path, pki)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(logfile, proc)
        proc.send_signal(signal.SIGHUP)
        _wait_for(pidfile, proc)  # it went on starting
        assert int(pidfile.read_text()) == proc.pid
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert not os.path.exists(pidfile)
