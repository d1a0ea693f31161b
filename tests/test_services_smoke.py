"""The real services the suite relies on answer from Python as the code uses them."""

from __future__ import annotations

import queue
import socket
import ssl
import uuid

import ldap3
import pymysql
import pytest
import stomp


def test_mariadb_query_with_pymysql_under_strict_mode(mysql_database):
    conn = pymysql.connect(**mysql_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@SESSION.sql_mode")
            modes = set(cur.fetchone()[0].split(","))
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(10) NOT NULL)")
            cur.executemany("INSERT INTO t VALUES (%s, %s)", [(1, "a"), (2, "b")])
            with pytest.raises(pymysql.err.OperationalError):
                # strict mode: NOT NULL violation is an error, not a silent ''
                cur.execute("INSERT INTO t (id) VALUES (3)")
            cur.execute("SELECT name FROM t ORDER BY id")
            assert [row[0] for row in cur.fetchall()] == ["a", "b"]
    finally:
        conn.close()
    assert {"ONLY_FULL_GROUP_BY", "STRICT_TRANS_TABLES", "NO_ZERO_DATE"} <= modes


class _Collector(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.frames: queue.Queue = queue.Queue()

    def on_message(self, frame) -> None:
        self.frames.put(frame)


def _tls_connection(activemq, pki, identity=None):
    conn = stomp.Connection([("127.0.0.1", activemq.ssl_port)], heartbeats=(0, 0))
    options = {"ca_certs": pki.ca.cert_path, "ssl_version": ssl.PROTOCOL_TLS_CLIENT}
    if identity is not None:
        options.update(cert_file=identity.cert_path, key_file=identity.key_path)
    conn.set_ssl(for_hosts=[("127.0.0.1", activemq.ssl_port)], **options)
    return conn


@pytest.mark.timeout(60)
def test_stomp_over_tls_with_client_certificate(activemq, pki):
    site = pki.host("smoke-site")
    destination = f"/queue/smoke.{uuid.uuid4().hex}"
    receiver = _tls_connection(activemq, pki, site)
    collector = _Collector()
    receiver.set_listener("collector", collector)
    receiver.connect(wait=True)
    receiver.subscribe(destination=destination, id="1", ack="client-individual")
    sender = _tls_connection(activemq, pki, site)
    sender.connect(wait=True)
    try:
        sender.send(destination=destination, body="hello broker", headers={"empa-id": "smoke1"})
        frame = collector.frames.get(timeout=20)
        receiver.ack(frame.headers["message-id"], frame.headers["subscription"])
    finally:
        sender.disconnect()
        receiver.disconnect()
    assert frame.body == "hello broker"
    assert frame.headers["empa-id"] == "smoke1"


def _raw_stomp_connect(activemq, pki, identity=None) -> bytes:
    """Speak STOMP CONNECT over a bare TLS socket and return the broker's answer.

    stomp.py waits forever when the broker drops a TLS 1.3 connection after the
    handshake, so the refusal is observed at the socket level.
    """
    context = ssl.create_default_context(cafile=pki.ca.cert_path)
    if identity is not None:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    with socket.create_connection(("127.0.0.1", activemq.ssl_port), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00")
            return tls.recv(4096)


@pytest.mark.timeout(60)
def test_stomp_over_tls_refused_without_client_certificate(activemq, pki):
    assert _raw_stomp_connect(activemq, pki, pki.host("smoke-raw")).startswith(b"CONNECTED")
    with pytest.raises(ssl.SSLError, match="(?i)certificate"):
        _raw_stomp_connect(activemq, pki, identity=None)


def test_ldap_search_on_slapd(slapd):
    server = ldap3.Server(slapd.url)
    admin = ldap3.Connection(server, "cn=admin,o=grid", slapd.admin_password, auto_bind=True)
    dn = f"ou=smoke{uuid.uuid4().hex[:8]},o=grid"
    if not admin.search("o=grid", "(objectClass=*)", search_scope=ldap3.BASE):
        assert admin.add("o=grid", ["organization"], {"o": "grid"})
    assert admin.add(dn, ["organizationalUnit"])
    reader = ldap3.Connection(server, auto_bind=True)
    reader.search("o=grid", "(objectClass=organizationalUnit)", attributes=["ou"])
    found = {entry.entry_dn for entry in reader.entries}
    assert dn in found
