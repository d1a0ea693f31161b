"""A broker whose certificate does not verify: ssmsend and ssmreceive say so, and why.

The real ActiveMQ presents, in turn, a certificate from a CA we do not trust, an
expired one, and one for another host name; then a good one while our client
certificate is one the broker does not trust. Each program must name the failure
(the TLS verification error), not "connection refused or closed".
"""

from __future__ import annotations

import pytest
from ssm_support import (
    fill_queue,
    run_send,
    start_receiver,
    unique_destination,
    wait_log,
    write_dns,
    write_receiver_cfg,
    write_sender_cfg,
)

from apel.testkit.pki import TestPKI
from apel.testkit.services import ActiveMQ
from ssm.dirqueue import DirqOutgoingQueue

CASES = {
    "another CA": "the broker's certificate failed verification: unable to get local issuer certificate "
                  "(the CA that issued it is not in ",
    "expired": "the broker's certificate failed verification: certificate has expired",
    "another host name": "the broker's certificate failed verification: Hostname mismatch, certificate is "
                         "not valid for 'localhost'.",
    "our certificate untrusted": "the broker refused the TLS connection (",
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory, pki):
    """One broker, restarted with the certificate each test asks for."""
    broker = ActiveMQ(str(tmp_path_factory.mktemp("cert-activemq")), pki)
    yield broker
    broker.stop()


def _broker_identity(case: str, pki, tmp_path):
    if case == "another CA":
        return TestPKI(str(tmp_path / "other-pki")).host("other-broker", cn="localhost")
    if case == "expired":
        return pki.host("expired-broker", cn="localhost", expired=True)
    if case == "another host name":
        return pki.host("misnamed-broker", cn="broker.example.org")
    return pki.host("good-broker", cn="localhost")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(CASES))
def test_ssmsend_and_ssmreceive_say_why_tls_failed(case, broker, pki, tmp_path):
    broker.stop()
    broker.identity = _broker_identity(case, pki, tmp_path)
    broker.start()
    ours = pki.host("cert-client", self_signed=case == "our certificate untrusted")
    destination, outgoing = unique_destination(), str(tmp_path / "outgoing")
    for sub in ("s", "r"):
        (tmp_path / sub).mkdir()
    send_cfg = write_sender_cfg(str(tmp_path / "s" / "sender.cfg"), ours, pki.capath, broker.ssl_port,
                                destination, outgoing, {"broker": {"connect_timeout": "3"}})
    fill_queue(outgoing, ["APEL-individual-job-message: v0.3\nSite: A\n%%"])

    result = run_send(send_cfg, timeout=60)

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert CASES[case] in result.stderr, result.stderr
    assert "connection refused or closed" not in result.stderr
    assert DirqOutgoingQueue(outgoing).count() == 1

    recv_cfg = write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), ours, pki.capath, broker.ssl_port,
                                  destination, str(tmp_path / "spool"), {"broker": {"connect_timeout": "3"}})
    receiver = start_receiver(recv_cfg, write_dns(str(tmp_path / "r" / "dns"), [ours.dn]),
                              str(tmp_path / "spool"))
    try:
        wait_log(str(tmp_path / "r" / "ssmreceive.log"), CASES[case])
        assert receiver.proc.poll() is None  # it keeps trying, with back-off
    finally:
        assert receiver.stop() == 0
