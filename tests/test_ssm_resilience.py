"""Nothing is lost when processes or the broker die: kill -9, broker restarts, several brokers."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time

import pytest
from ssm_support import (
    SSMSEND,
    fill_queue,
    make_body,
    openssl_sign,
    publish,
    run_send,
    start_receiver,
    unique_destination,
    wait_log,
    write_dns,
    write_receiver_cfg,
    write_sender_cfg,
)

from apel.testkit.services import ActiveMQ
from ssm.dirqueue import DirqOutgoingQueue

pytestmark = pytest.mark.services  # every test here runs against its own ActiveMQ


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory, pki):
    """A broker this module may stop and restart without disturbing other test files."""
    broker = ActiveMQ(str(tmp_path_factory.mktemp("own-activemq")), pki).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def ids(pki):
    return pki.host("res-sender"), pki.host("res-receiver")


def _configs(tmp_path, pki, ids, port, destination, sender_extra=None, receiver_extra=None, host="localhost"):
    sender, receiver = ids
    for sub in ("s", "r"):
        (tmp_path / sub).mkdir(exist_ok=True)
    send_cfg = write_sender_cfg(str(tmp_path / "s" / "sender.cfg"), sender, pki.capath, port, destination,
                                str(tmp_path / "outgoing"), sender_extra, host=host)
    recv_cfg = write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), receiver, pki.capath, port,
                                  destination, str(tmp_path / "spool"), receiver_extra, host=host)
    dns = write_dns(str(tmp_path / "r" / "dns"), [sender.dn])
    return send_cfg, recv_cfg, dns


def _check_complete(items: list[dict], expected: dict[str, str]) -> None:
    """Every message present; duplicates only as identical copies with the same empaid."""
    by_id = collections.defaultdict(set)
    for item in items:
        by_id[item["empaid"]].add(item["body"])
    assert set(by_id) == set(expected)
    for empaid, bodies in by_id.items():
        assert bodies == {expected[empaid]}, f"{empaid}: copies differ"


def _wait_for_progress(queue: DirqOutgoingQueue, sender: subprocess.Popen, below: int) -> None:
    """Until the sender has sent enough that fewer than ``below`` messages are queued."""
    deadline = time.monotonic() + 60
    while queue.count() >= below:
        assert sender.poll() is None, sender.communicate()
        assert time.monotonic() < deadline, f"{queue.count()} messages still queued after 60 s"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_receiver_during_1000_message_stream_loses_nothing(tmp_path, pki, own_broker, ids):
    destination = unique_destination()
    send_cfg, recv_cfg, dns = _configs(tmp_path, pki, ids, own_broker.ssl_port, destination,
                                       sender_extra={"messaging": {"sign_workers": "1"}})
    bodies = [make_body(i, random.Random(i).randint(1024, 8192)) for i in range(1000)]
    expected = dict(zip(fill_queue(str(tmp_path / "outgoing"), bodies), bodies))
    spool = str(tmp_path / "spool")
    rng = random.Random(9)
    receiver = start_receiver(recv_cfg, dns, spool)
    sender = subprocess.Popen([SSMSEND, "-c", send_cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    kills = 0
    try:
        pidfile = receiver.pidfile()
        while kills < 4:
            # Killed at points of its progress, not after a time: once it has taken the
            # pidfile and stored 1-120 more messages (mid-batch, with more on the way).
            receiver.wait_ready()
            receiver.wait_for(min(receiver.count() + rng.randint(1, 120), len(bodies)), timeout=120)
            time.sleep(rng.uniform(0, 0.05))
            receiver.kill()  # SIGKILL: no cleanup, stale pidfile, unacked messages in flight
            kills += 1
            assert os.path.exists(pidfile)
            receiver = start_receiver(recv_cfg, dns, spool)  # replaces the stale pidfile
        _out, err = sender.communicate(timeout=180)
        assert sender.returncode == 0, err
        items = receiver.wait_for(1000, timeout=120)
        deadline = time.monotonic() + 60
        while {i["empaid"] for i in items} != set(expected) and time.monotonic() < deadline:
            time.sleep(0.5)
            items = receiver.incoming()
    finally:
        if sender.poll() is None:
            sender.kill()
        status = receiver.stop()
    assert status == 0
    assert kills == 4
    _check_complete(items, expected)
    assert receiver.rejects() == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_broker_restart_during_send_keeps_unsent_messages_for_the_next_run(tmp_path, pki, own_broker, ids):
    destination = unique_destination()
    send_cfg, recv_cfg, dns = _configs(tmp_path, pki, ids, own_broker.ssl_port, destination,
                                       sender_extra={"messaging": {"sign_workers": "1", "send_window": "5"},
                                                     "broker": {"reconnect_attempts": "1"}})
    outgoing = str(tmp_path / "outgoing")
    bodies = [make_body(i, 4000) for i in range(1000)]
    expected = dict(zip(fill_queue(outgoing, bodies), bodies))
    queue = DirqOutgoingQueue(outgoing)
    sender = subprocess.Popen([SSMSEND, "-c", send_cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        _wait_for_progress(queue, sender, below=950)
        # Frozen while the broker stops, so it cannot finish the queue first however
        # fast it is: it resumes with messages left and a dead connection.
        sender.send_signal(signal.SIGSTOP)
        own_broker.stop()
        sender.send_signal(signal.SIGCONT)
        _out, err = sender.communicate(timeout=120)
    finally:
        if sender.poll() is None:
            sender.kill()
        own_broker.start()
    assert sender.returncode == 1
    assert err.count("\n") == 1 and "unsent messages stay queued" in err, err
    left = queue.count()
    assert 0 < left <= 950
    # nothing is left locked: the next run takes everything that is left
    second = run_send(send_cfg, timeout=120)
    assert second.returncode == 0, second.stderr
    assert queue.count() == 0
    receiver = start_receiver(recv_cfg, dns, str(tmp_path / "spool"))
    try:
        items = receiver.wait_for(1000, timeout=120)
        deadline = time.monotonic() + 30
        while {i["empaid"] for i in items} != set(expected) and time.monotonic() < deadline:
            time.sleep(0.5)
            items = receiver.incoming()
    finally:
        assert receiver.stop() == 0
    _check_complete(items, expected)


@pytest.mark.timeout(180)
def test_sender_reconnects_within_the_run_when_the_broker_comes_back(tmp_path, pki, own_broker, ids):
    destination = unique_destination()
    send_cfg, _recv_cfg, _dns = _configs(tmp_path, pki, ids, own_broker.ssl_port, destination,
                                         sender_extra={"messaging": {"sign_workers": "1", "send_window": "5"},
                                                       "broker": {"reconnect_attempts": "6"}})
    outgoing = str(tmp_path / "outgoing")
    fill_queue(outgoing, [make_body(i, 4000) for i in range(800)])
    queue = DirqOutgoingQueue(outgoing)
    sender = subprocess.Popen([SSMSEND, "-c", send_cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        _wait_for_progress(queue, sender, below=750)
        sender.send_signal(signal.SIGSTOP)  # see test_broker_restart_during_send_keeps_unsent_...
        own_broker.restart()
        sender.send_signal(signal.SIGCONT)
        _out, err = sender.communicate(timeout=150)
    finally:
        if sender.poll() is None:
            sender.kill()
    assert sender.returncode == 0, err
    assert queue.count() == 0
    wait_log(str(tmp_path / "s" / "ssmsend.log"), "Reconnecting in")


@pytest.mark.timeout(120)
def test_subscribe_all_reads_every_broker_of_the_list(tmp_path, pki, activemq, own_broker, ids):
    sender, _receiver = ids
    destination = unique_destination()
    hosts = f"localhost:{activemq.ssl_port}, localhost:{own_broker.ssl_port}"
    _send_cfg, recv_cfg, dns = _configs(tmp_path, pki, ids, activemq.ssl_port, destination,
                                        receiver_extra={"receiver": {"subscribe_all": "true"},
                                                        "broker": {"port": None}},
                                        host=hosts)
    text = make_body(3, 1500)
    publish(activemq.ssl_port, sender, pki.ca.cert_path, destination,
            [(openssl_sign(sender, text), {"empa-id": "from-first"})])
    publish(own_broker.ssl_port, sender, pki.ca.cert_path, destination,
            [(openssl_sign(sender, text), {"empa-id": "from-second"})])
    receiver = start_receiver(recv_cfg, dns, str(tmp_path / "spool"))
    try:
        items = receiver.wait_for(2)
    finally:
        assert receiver.stop() == 0
    assert sorted(i["empaid"] for i in items) == ["from-first", "from-second"]


@pytest.mark.timeout(120)
def test_receiver_reconnects_after_broker_restart(tmp_path, pki, own_broker, ids):
    sender, _receiver = ids
    destination = unique_destination()
    _send_cfg, recv_cfg, dns = _configs(tmp_path, pki, ids, own_broker.ssl_port, destination)
    text = make_body(4, 1500)
    receiver = start_receiver(recv_cfg, dns, str(tmp_path / "spool"))
    try:
        wait_log(str(tmp_path / "r" / "ssmreceive.log"), "Subscribed to")
        own_broker.restart()
        publish(own_broker.ssl_port, sender, pki.ca.cert_path, destination,
                [(openssl_sign(sender, text), {"empa-id": "after-restart"})])
        items = receiver.wait_for(1, timeout=60)
    finally:
        assert receiver.stop() == 0
    assert items[0]["empaid"] == "after-restart"
