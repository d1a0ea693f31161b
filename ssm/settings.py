"""What ``sender.cfg`` and ``receiver.cfg`` share, read once and checked up front.

Both programs resolve the protocol, the broker list, the TLS settings and the
host certificate the same way, and fail with one line
before touching any queue or broker when something is wrong.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from acctbase.config import DIR, FILE, ConfigFile
from ssm.brokers import Broker, brokers_from_config
from ssm.exceptions import CertificateError
from ssm.stomp_link import TLSSettings

log = logging.getLogger(__name__)

PROTOCOLS = ("STOMP", "AMS")
MAX_TIMEOUT = 3600.0  # seconds: waits longer than an hour are typos, not network conditions
MAX_HEARTBEAT_MS = 3_600_000


@dataclass
class CommonSettings:
    certificate: str
    key: str
    capath: str
    use_ssl: bool
    tls: Optional[TLSSettings]
    brokers: list[Broker]
    destination: str
    connect_timeout: float
    heartbeats: tuple[int, int]


def resolve_protocol(config: ConfigFile, section: str) -> str:
    """``STOMP`` (default, with a warning); ``AMS`` is refused: this build speaks STOMP only."""
    if not config.has_option(section, "protocol"):
        log.warning("No protocol set in [%s]; using STOMP", section)
        return "STOMP"
    protocol = config.getchoice(section, "protocol", PROTOCOLS)
    if protocol == "AMS":
        raise config.error(section, "protocol", "AMS is not supported by this build; set protocol: STOMP")
    return protocol


def check_host_certificate(certificate: str, key: str) -> str:
    """The host certificate's DN after checking it matches its key and is not about to expire."""
    from ssm import crypto

    if os.path.realpath(certificate) == os.path.realpath(key):
        raise CertificateError(
            f"Certificate and key are the same file ({certificate}); they must be separate")
    try:
        if not crypto.check_cert_key(certificate, key):
            raise CertificateError(f"Cert and key don't match: {certificate}, {key}")
        if not crypto.verify_cert_date(certificate):
            raise CertificateError(f"Certificate {certificate} has expired or will expire within a day.")
        with open(certificate, encoding="ascii", errors="replace") as handle:
            return crypto.get_certificate_subject(handle.read())
    except crypto.CryptoException as exc:
        raise CertificateError(f"Cannot use certificate {certificate}: {exc}") from None
    except OSError as exc:
        raise CertificateError(f"Cannot read certificate {certificate}: {exc.strerror}") from None


def read_common(config: ConfigFile, role: str) -> CommonSettings:
    """The options both programs share; ``role`` is ``sender`` or ``receiver``."""
    resolve_protocol(config, role)
    certificate = config.getpath("certificates", "certificate", kind=FILE)
    key = config.getpath("certificates", "key", kind=FILE)
    capath = config.getpath("certificates", "capath", kind=DIR)
    use_ssl = config.getbool("broker", "use_ssl", default=True)
    tls = None
    if use_ssl:
        verify_broker = config.getbool("broker", "verify_broker_cert", default=True)
        broker_capath = config.getpath("broker", "broker_capath", default=capath, kind=DIR)
        if not verify_broker:
            log.warning("verify_broker_cert is false: the broker's certificate is NOT checked.")
        tls = TLSSettings(certificate, key, broker_capath, verify_broker)
    else:
        log.warning("SSL connection not requested, your messages may be intercepted.")
    connect_timeout = config.getfloat("broker", "connect_timeout", default=10.0,
                                      minimum=1, maximum=MAX_TIMEOUT, unit="seconds")
    heartbeat_ms = config.getint("broker", "heartbeat", default=5000, minimum=0, maximum=MAX_HEARTBEAT_MS,
                                 unit="ms (0: off)")
    brokers = brokers_from_config(config, use_ssl)
    destination = config.get("messaging", "destination")
    if role == "sender" and not destination:
        raise config.error("messaging", "destination", "No destination queue is configured.")
    return CommonSettings(
        certificate=certificate, key=key, capath=capath, use_ssl=use_ssl, tls=tls,
        brokers=brokers, destination=destination, connect_timeout=connect_timeout,
        heartbeats=(heartbeat_ms, heartbeat_ms),
    )
