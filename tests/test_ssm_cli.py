"""The programs' command line, configuration errors, pidfile and daemon behaviour."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from ssm_support import (
    SSMRECEIVE,
    SSMSEND,
    fill_queue,
    run_send,
    start_receiver,
    unique_destination,
    wait_log,
    write_dns,
    write_receiver_cfg,
    write_sender_cfg,
)

from ssm import __version__

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def host(pki):
    return pki.host("cli-host")


def _one_line_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("program", [SSMSEND, SSMRECEIVE])
def test_version(program):
    result = subprocess.run([program, "-v"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"SSM {__version__}"


@pytest.mark.parametrize("program", [SSMSEND, SSMRECEIVE])
def test_missing_config_file(program, tmp_path):
    result = subprocess.run([program, "-c", str(tmp_path / "nope.cfg")], capture_output=True, text=True,
                            check=False)
    _one_line_failure(result, "nope.cfg", "not found")


def _send_cfg(tmp_path, pki, host, extra=None) -> str:
    return write_sender_cfg(str(tmp_path / "sender.cfg"), host, pki.capath, 61999, "/queue/x",
                            str(tmp_path / "outgoing"), extra)


@pytest.mark.parametrize("extra, needles", [
    ({"messaging": {"destination": None}}, ["[messaging] destination", "missing option"]),
    ({"messaging": {"destination": ""}}, ["No destination queue is configured."]),
    ({"sender": {"protocol": "AMS"}}, ["AMS is not supported by this build"]),
    ({"sender": {"protocol": "CARRIER-PIGEON"}}, ["[sender] protocol", "STOMP, AMS"]),
    ({"broker": {"host": None}}, ["Options incorrectly supplied"]),
    ({"broker": {"port": "http"}}, ["[broker] port", "not an integer"]),
    ({"messaging": {"path_type": "s3"}}, ["[messaging] path_type"]),
    ({"certificates": {"capath": "/nonexistent"}}, ["[certificates] capath"]),
    ({"logging": {"level": "LOUD"}}, ["[logging] level"]),
])
def test_sender_config_errors_are_one_line(tmp_path, pki, host, extra, needles):
    _one_line_failure(run_send(_send_cfg(tmp_path, pki, host, extra)), *needles)


def test_sender_certificate_problems(tmp_path, pki, host):
    other = pki.host("cli-other")
    expired = pki.host("cli-expired", expired=True)
    result = run_send(_send_cfg(tmp_path, pki, host, {"certificates": {"key": other.key_path}}))
    _one_line_failure(result, "Cert and key don't match")
    result = run_send(_send_cfg(tmp_path, pki, host, {"certificates": {
        "certificate": expired.cert_path, "key": expired.key_path}}))
    _one_line_failure(result, f"Certificate {expired.cert_path} has expired or will expire within a day.")
    result = run_send(_send_cfg(tmp_path, pki, host, {"certificates": {"server_cert": host.cert_path}}))
    _one_line_failure(result, "server certificate is the same as host certificate")
    result = run_send(_send_cfg(tmp_path, pki, host, {"certificates": {"server_cert": expired.cert_path}}))
    _one_line_failure(result, f"Encryption certificate {expired.cert_path} has expired")
    untrusted = pki.host("cli-untrusted", self_signed=True)
    result = run_send(_send_cfg(tmp_path, pki, host, {"certificates": {"server_cert": untrusted.cert_path}}))
    _one_line_failure(result, "Failed to verify server certificate")
    # ... unless verification is explicitly turned off (then the queue is just empty here)
    result = run_send(_send_cfg(tmp_path, pki, host, {"certificates": {
        "server_cert": untrusted.cert_path, "verify_server_cert": "false"}}))
    assert result.returncode == 0, result.stderr


def test_sender_no_broker_reachable(tmp_path, pki, host):
    fill_queue(str(tmp_path / "outgoing"), ["hello"])
    result = run_send(_send_cfg(tmp_path, pki, host, {"broker": {"connect_timeout": "3"}}))
    _one_line_failure(result, "Attempts to start the SSM failed")


def _recv_cfg(tmp_path, pki, host, port, extra=None) -> str:
    return write_receiver_cfg(str(tmp_path / "receiver.cfg"), host, pki.capath, port, unique_destination(),
                              str(tmp_path / "spool"), extra)


def _receive(cfg: str, dns: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([SSMRECEIVE, "-c", cfg, "-d", dns, *extra], capture_output=True, text=True,
                          timeout=30, check=False)


def test_receiver_config_errors(tmp_path, pki, host):
    dns = write_dns(str(tmp_path / "dns"), [host.dn])
    _one_line_failure(_receive(_recv_cfg(tmp_path, pki, host, 1, {"certificates": {"check_crls": None}}),
                               dns, "--foreground"), "[certificates] check_crls")
    _one_line_failure(_receive(_recv_cfg(tmp_path, pki, host, 1, {"daemon": {"pidfile": None}}),
                               dns, "--foreground"), "[daemon] pidfile")
    _one_line_failure(_receive(_recv_cfg(tmp_path, pki, host, 1, {"receiver": {"protocol": "AMS"}}),
                               dns, "--foreground"), "AMS is not supported")
    empty = write_dns(str(tmp_path / "empty-dns"), ["", "# nobody", "CN=not slash form"])
    _one_line_failure(_receive(_recv_cfg(tmp_path, pki, host, 1), empty, "--foreground"),
                      "No valid DNs found in", "SSM will not start")
    _one_line_failure(_receive(_recv_cfg(tmp_path, pki, host, 1), str(tmp_path / "missing"), "--foreground"),
                      "Cannot read DN file")


def _wait_exists(path: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(path)


def test_pidfile_live_refused_stale_replaced_sigterm_exits_0(tmp_path, pki, host, activemq):
    cfg = _recv_cfg(tmp_path, pki, host, activemq.ssl_port)
    dns = write_dns(str(tmp_path / "dns"), [host.dn])
    pidfile = str(tmp_path / "ssmreceive.pid")
    spool = str(tmp_path / "spool")

    # a stale pidfile of a dead process is replaced
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(pidfile, "w", encoding="ascii") as handle:
        handle.write(f"{dead.pid}\n")
    first = start_receiver(cfg, dns, spool)
    try:
        wait_log(str(tmp_path / "ssmreceive.log"), "Subscribed to")
        with open(pidfile, encoding="ascii") as handle:
            assert int(handle.read()) == first.proc.pid
        # a live one refuses a second copy with one clear line
        second = _receive(cfg, dns, "--foreground")
        _one_line_failure(second, "already running", str(first.proc.pid))
        assert first.proc.poll() is None
    finally:
        status = first.stop()
    assert status == 0
    assert not os.path.exists(pidfile)
    assert oct(os.stat(os.path.join(spool, "incoming")).st_mode & 0o777) == "0o700"


def test_daemon_mode_detaches_writes_pidfile_and_stops_on_sigterm(tmp_path, pki, host, activemq):
    cfg = _recv_cfg(tmp_path, pki, host, activemq.ssl_port)
    dns = write_dns(str(tmp_path / "dns"), [host.dn])
    pidfile = str(tmp_path / "ssmreceive.pid")
    launcher = _receive(cfg, os.path.relpath(dns))  # relative -d path is made absolute before chdir /
    assert launcher.returncode == 0, launcher.stderr
    _wait_exists(pidfile)
    wait_log(str(tmp_path / "ssmreceive.log"), "Subscribed to")
    with open(pidfile, encoding="ascii") as handle:
        pid = int(handle.read())
    os.kill(pid, signal.SIGHUP)  # reload, not death
    wait_log(str(tmp_path / "ssmreceive.log"), "Reloaded 1 valid DNs")
    os.kill(pid, 0)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(pidfile)
    wait_log(str(tmp_path / "ssmreceive.log"), "SSM has shut down")
