"""Broker discovery from a BDII (GLUE 1.3 under o=grid), against a real slapd."""

from __future__ import annotations

import pytest
from ssm_support import (
    fill_queue,
    run_send,
    start_receiver,
    write_dns,
    write_receiver_cfg,
    write_sender_cfg,
)

from apel.testkit.services import Slapd, free_port
from ssm.brokers import Broker, discover, parse_endpoint, parse_host_list
from ssm.dirqueue import DirqOutgoingQueue
from ssm.exceptions import BrokerDiscoveryError

pytestmark = pytest.mark.timeout(60)

HEAD = """dn: o=grid
objectClass: organization
o: grid

dn: Mds-Vo-name=local,o=grid
objectClass: Mds
Mds-Vo-name: local

"""


def _broker(unique_id: str, service_type: str, endpoint: str, networks: list[str]) -> str:
    dn = f"GlueServiceUniqueID={unique_id},Mds-Vo-name=local,o=grid"
    text = (
        f"dn: {dn}\nobjectClass: GlueTop\nobjectClass: GlueService\nobjectClass: GlueKey\n"
        f"objectClass: GlueSchemaVersion\nGlueServiceUniqueID: {unique_id}\nGlueServiceName: {unique_id}\n"
        f"GlueServiceType: {service_type}\nGlueServiceVersion: 5.17\nGlueServiceEndpoint: {endpoint}\n"
        "GlueForeignKey: GlueSiteUniqueID=TEST-SITE\nGlueSchemaVersionMajor: 1\nGlueSchemaVersionMinor: 3\n\n"
    )
    if networks:
        text += (
            f"dn: GlueServiceDataKey=cluster,{dn}\nobjectClass: GlueTop\nobjectClass: GlueServiceData\n"
            "objectClass: GlueKey\nobjectClass: GlueSchemaVersion\nGlueServiceDataKey: cluster\n"
            + "".join(f"GlueServiceDataValue: {n}\n" for n in networks)
            + f"GlueChunkKey: GlueServiceUniqueID={unique_id}\n"
            "GlueSchemaVersionMajor: 1\nGlueSchemaVersionMinor: 3\n\n"
        )
    return text


@pytest.fixture(scope="module")
def bdii(tmp_path_factory, activemq):
    ldif = HEAD + "".join([
        _broker("real_msg.broker.stomp-ssl", "msg.broker.stomp-ssl",
                f"stomp+ssl://127.0.0.1:{activemq.ssl_port}", ["PROD"]),
        _broker("v6_msg.broker.stomp-ssl", "msg.broker.stomp-ssl", "stomp+ssl://[2001:db8::7]:61614/",
                ["PROD"]),
        _broker("mq.cro-ngi.hr_msg.broker.stomp_3523291347", "msg.broker.stomp",
                "stomp://mq.cro-ngi.hr:6163/", ["TEST-NWOB"]),
        _broker("test_msg.broker.stomp-ssl", "msg.broker.stomp-ssl", "stomp+ssl://test.example.org:6162",
                ["TEST-NWOB"]),
        _broker("bad_msg.broker.stomp-ssl", "msg.broker.stomp-ssl", "http://bad.example.org:80", ["PROD"]),
        _broker("orphan_msg.broker.stomp-ssl", "msg.broker.stomp-ssl", "stomp+ssl://orphan.example.org:1",
                []),
    ])
    server = Slapd(str(tmp_path_factory.mktemp("bdii"))).start(ldif={"o=grid": ldif})
    yield server
    server.stop()


def test_prod_ssl_brokers_include_ipv6_and_skip_bad_endpoints(bdii, activemq):
    found = discover(bdii.url, "PROD", use_ssl=True)
    assert sorted(found, key=str) == sorted(
        [Broker("127.0.0.1", activemq.ssl_port), Broker("2001:db8::7", 61614)], key=str)


@pytest.mark.services  # the bdii fixture is a slapd
def test_test_network_and_plain_stomp(bdii):
    assert discover(bdii.url, "TEST-NWOB", use_ssl=True) == [Broker("test.example.org", 6162)]
    assert discover(bdii.url, "TEST-NWOB", use_ssl=False) == [Broker("mq.cro-ngi.hr", 6163)]


@pytest.mark.services  # the bdii fixture is a slapd
def test_empty_result_is_a_clear_error(bdii):
    with pytest.raises(BrokerDiscoveryError, match="No brokers available"):
        discover(bdii.url, "PROD", use_ssl=False)


def test_ldap_down_is_a_clear_error():
    with pytest.raises(BrokerDiscoveryError, match="Could not connect to LDAP server"):
        discover(f"ldap://127.0.0.1:{free_port()}", "PROD", use_ssl=True)


@pytest.mark.parametrize("url, expected", [
    ("stomp://mq.cro-ngi.hr:6163/", Broker("mq.cro-ngi.hr", 6163)),
    ("stomp+ssl://stomp.cern.ch:61262", Broker("stomp.cern.ch", 61262)),
    ("STOMP+SSL://[::1]:61614", Broker("::1", 61614)),
    ("stomp+ssl://[2001:db8::1]:6162/", Broker("2001:db8::1", 6162)),
])
def test_parse_endpoint(url, expected):
    assert parse_endpoint(url) == expected


@pytest.mark.parametrize("url", [
    "http://mq.example.org:80", "stomp://mq.example.org:port", "stomp://mq.example.org",
    "stomp://:61613", "stomp://mq.example.org:61613/extra", "mq.example.org:61613", "",
])
def test_parse_endpoint_rejects(url):
    with pytest.raises(ValueError):
        parse_endpoint(url)


def test_static_host_lists():
    assert parse_host_list(["a.example.org", "b.example.org:7000", "[::1]:6000", "::1"], 61613) == [
        Broker("a.example.org", 61613), Broker("b.example.org", 7000), Broker("::1", 6000),
        Broker("::1", 61613),
    ]
    with pytest.raises(ValueError):
        parse_host_list(["a.example.org"], None)


def test_ssmsend_finds_its_broker_in_the_bdii(tmp_path, pki, bdii, activemq):
    sender, receiver = pki.host("bdii-sender"), pki.host("bdii-receiver")
    destination = "/queue/test.bdii"
    bdii_broker = {"bdii": bdii.url, "network": "PROD", "host": None, "port": None}
    # the IPv6 documentation address is unreachable: the sender falls through to the real broker
    cfg = write_sender_cfg(str(tmp_path / "sender.cfg"), sender, pki.capath, 1, destination,
                           str(tmp_path / "outgoing"), {"broker": dict(bdii_broker, connect_timeout="2")})
    fill_queue(str(tmp_path / "outgoing"), ["found you\n%%"])
    result = run_send(cfg)
    assert result.returncode == 0, result.stderr
    assert DirqOutgoingQueue(str(tmp_path / "outgoing")).count() == 0
    (tmp_path / "r").mkdir()
    recv_cfg = write_receiver_cfg(str(tmp_path / "r" / "receiver.cfg"), receiver, pki.capath,
                                  activemq.ssl_port, destination, str(tmp_path / "spool"))
    dns = write_dns(str(tmp_path / "r" / "dns"), [sender.dn])
    proc = start_receiver(recv_cfg, dns, str(tmp_path / "spool"))
    try:
        (item,) = proc.wait_for(1)
    finally:
        assert proc.stop() == 0
    assert item["body"] == "found you\n%%"


@pytest.mark.services  # the bdii fixture is a slapd
def test_ssmsend_bdii_errors_are_one_line(tmp_path, pki, bdii):
    sender = pki.host("bdii-sender2")
    fill_queue(str(tmp_path / "outgoing"), ["x"])
    for broker, needle in [
        ({"bdii": f"ldap://127.0.0.1:{free_port()}", "network": "PROD"}, "Could not connect to LDAP server"),
        ({"bdii": bdii.url, "network": "NO-SUCH-NETWORK"}, "No brokers available"),
    ]:
        cfg = write_sender_cfg(str(tmp_path / "sender.cfg"), sender, pki.capath, 1, "/queue/x",
                               str(tmp_path / "outgoing"), {"broker": broker})
        result = run_send(cfg)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
