"""Which brokers to talk to: the configured host(s), or a BDII lookup.

BDII discovery follows the existing SSM's GLUE 1.3 contract (``o=grid``, service
type ``msg.broker.stomp[-ssl]``, network membership through a
``GlueServiceDataKey=cluster`` entry) but fixes its defects:
attribute values are text, IPv6 endpoints parse, and the list is shuffled so every
client does not hammer the first broker.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from acctbase.config import ConfigFile, host_problem
from ssm.exceptions import BrokerDiscoveryError

log = logging.getLogger(__name__)

SERVICE_STOMP = "msg.broker.stomp"
SERVICE_STOMP_SSL = "msg.broker.stomp-ssl"
BDII_BASE = "o=grid"
LDAP_TIMEOUT = 10


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(url: str) -> Broker:
    """``stomp://host:port/`` or ``stomp+ssl://[::1]:61614`` -> Broker; ValueError otherwise."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid broker endpoint {url!r}") from None
    if parts.scheme.lower() not in ("stomp", "stomp+ssl"):
        raise ValueError(f"broker endpoint {url!r} is not stomp:// or stomp+ssl://")
    if not parts.hostname or port is None:
        raise ValueError(f"broker endpoint {url!r} has no host or no port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"broker endpoint {url!r} has unexpected parts")
    # urlsplit accepts "+12" style ports on some versions; insist on digits.
    if not re.search(r":\d+/?$", text):
        raise ValueError(f"broker endpoint {url!r} has a non-numeric port")
    return Broker(parts.hostname, port)


def parse_host_list(hosts: list[str], default_port: Optional[int]) -> list[Broker]:
    """``[broker] host`` entries: ``name``, ``name:port``, ``[v6]:port`` or a bare IPv6 address."""
    brokers = []
    for item in hosts:
        match = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\](?::(\d+))?", item)
        if match:
            host, port_text = match.group(1), match.group(2)
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            if not port_text.isdigit():
                raise ValueError(f"invalid port in broker host {item!r}")
        else:  # plain name, or an unbracketed IPv6 address
            host, port_text = item, None
        problem = host_problem(host)
        if problem:
            raise ValueError(f"broker host {item!r}: {problem}")
        port = int(port_text) if port_text else default_port
        if port is None:
            raise ValueError(f"no port for broker host {item!r}")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} of broker host {item!r} is out of range")
        brokers.append(Broker(host, port))
    return brokers


def discover(bdii_url: str, network: str, use_ssl: bool, shuffle: bool = True) -> list[Broker]:
    """Brokers of ``network`` published in the BDII at ``bdii_url``.

    BrokerDiscoveryError with one line when the BDII cannot be queried or lists no broker.
    """
    import ldap3
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars

    service_type = SERVICE_STOMP_SSL if use_ssl else SERVICE_STOMP
    try:
        server = ldap3.Server(bdii_url, connect_timeout=LDAP_TIMEOUT, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, auto_bind=True, receive_timeout=LDAP_TIMEOUT, read_only=True)
    except (LDAPException, OSError, ValueError) as exc:
        raise BrokerDiscoveryError(f"Could not connect to LDAP server {bdii_url}: {exc}") from None
    brokers: list[Broker] = []
    try:
        conn.search(
            BDII_BASE,
            f"(&(objectClass=GlueService)(GlueServiceType={escape_filter_chars(service_type)}))",
            attributes=["GlueServiceUniqueID", "GlueServiceEndpoint"],
        )
        services = [
            (_first_text(entry, "GlueServiceUniqueID"), _first_text(entry, "GlueServiceEndpoint"))
            for entry in conn.response or []
            if entry.get("type") == "searchResEntry"
        ]
        for unique_id, endpoint in services:
            if not unique_id or not endpoint:
                continue
            conn.search(
                BDII_BASE,
                "(&(GlueServiceDataKey=cluster)"
                f"(GlueChunkKey=GlueServiceUniqueID={escape_filter_chars(unique_id)}))",
                attributes=["GlueServiceDataValue"],
            )
            results = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
            if not results:
                continue
            networks = _texts(results[0], "GlueServiceDataValue")
            if network not in networks:
                continue
            try:
                brokers.append(parse_endpoint(endpoint))
            except ValueError as exc:
                log.warning("Ignoring broker %s: %s", unique_id, exc)
    except (LDAPException, OSError) as exc:
        raise BrokerDiscoveryError(f"Could not connect to LDAP server {bdii_url}: {exc}") from None
    finally:
        try:
            conn.unbind()
        except Exception:  # noqa: S110 - the answer is already in hand
            pass
    if not brokers:
        raise BrokerDiscoveryError(f"No brokers available: none of type {service_type} in network {network} "
                         f"at {bdii_url}.")
    if shuffle:
        random.shuffle(brokers)
    log.info("Found %d brokers of network %s in %s: %s", len(brokers), network, bdii_url,
             ", ".join(str(b) for b in brokers))
    return brokers


def _texts(entry: dict, attribute: str) -> list[str]:
    values = entry.get("raw_attributes", {}).get(attribute) or []
    texts = []
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        texts.append(text.strip())
    return texts


def _first_text(entry: dict, attribute: str) -> str:
    values = _texts(entry, attribute)
    return values[0] if values else ""


def brokers_from_config(config: ConfigFile, use_ssl: bool) -> list[Broker]:
    """The broker list ``[broker]`` asks for: BDII when ``bdii`` and ``network`` are set."""
    bdii = config.get("broker", "bdii", default="")
    if bdii:  # checked even without network: it is a URL or a mistake either way
        bdii = config.geturl("broker", "bdii", schemes=("ldap", "ldaps"))
    network = config.get("broker", "network", default="")
    if bdii and network:
        log.info("Looking up brokers of network %s in BDII %s", network, bdii)
        return discover(bdii, network, use_ssl)
    hosts = config.getlist("broker", "host", default=[])
    if not hosts:
        raise config.error(
            "broker", "host",
            "Options incorrectly supplied for either single broker or broker network "
            "(set host and port, or bdii and network)",
        )
    port = config.getint("broker", "port", default=None, minimum=1, maximum=65535)
    try:
        brokers = parse_host_list(hosts, port)
    except ValueError as exc:
        raise config.error("broker", "host", str(exc)) from None
    if not brokers:
        raise BrokerDiscoveryError("No brokers available.")
    return brokers
