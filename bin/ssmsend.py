"""ssmsend: send every message of the outgoing queue to the broker, then exit (cron).

Exit 0 when the queue is drained (or empty), 1 with one line otherwise; a message
is only removed once the broker has confirmed it, so nothing is lost either way.
"""

from __future__ import annotations

import logging
import os

from acctbase.cli import FatalError, make_parser, run, warn_deprecated
from acctbase.config import FILE, NEW_DIR, ConfigFile
from acctbase.logs import setup_logging
from ssm import __version__

PROG = "ssmsend"
DEFAULT_CONFIG = "/etc/apel/sender.cfg"
MAX_MESSAGE_SIZE = 1 << 30  # bytes; far beyond what any broker accepts in one frame


def _main() -> int:
    parser = make_parser(PROG, "Send the outgoing SSM queue to a message broker.",
                         f"SSM {__version__}", DEFAULT_CONFIG)
    args = parser.parse_args()
    config = ConfigFile(args.config)
    setup_logging(config)
    log = logging.getLogger(PROG)
    warn_deprecated(args)
    os.umask(0o077)

    from ssm import crypto
    from ssm.dirqueue import QueueIOError, open_outgoing
    from ssm.sender import Sender
    from ssm.settings import MAX_TIMEOUT, check_host_certificate, read_common
    from ssm.sign_ahead import SenderOptions

    common = read_common(config, "sender")
    log.info("Starting sending SSM version %s.", __version__)
    dn = check_host_certificate(common.certificate, common.key)
    log.info("Messages will be signed using %s", dn)

    server_cert = None
    if config.get("certificates", "server_cert", default=""):  # empty: no encryption
        server_cert = config.getpath("certificates", "server_cert", kind=FILE)
        if os.path.realpath(server_cert) == os.path.realpath(common.certificate):
            raise FatalError("server certificate is the same as host certificate in config file. "
                             "Do you really mean to encrypt messages with this certificate?")
        try:
            if not crypto.verify_cert_date(server_cert):
                raise FatalError(
                    f"Encryption certificate {server_cert} has expired or will expire within a day. "
                    "Please obtain the new one from the final server receiving your messages."
                )
            if config.getbool("certificates", "verify_server_cert", default=True) and \
                    not crypto.verify_cert_path(server_cert, common.capath, False):
                raise FatalError(
                    f"Failed to verify server certificate {server_cert} against CA path {common.capath}."
                )
            with open(server_cert, encoding="ascii", errors="replace") as handle:
                log.info("Messages will be encrypted using %s", crypto.get_certificate_subject(handle.read()))
        except crypto.CryptoException as exc:
            raise FatalError(f"Cannot use server certificate {server_cert}: {exc}") from None

    if config.has_option("messaging", "path_type"):
        path_type = config.getchoice("messaging", "path_type", ["dirq", "directory"])
    else:
        log.info("No path type defined, assuming dirq.")
        path_type = "dirq"
    options = SenderOptions(
        destination=common.destination,
        certificate=common.certificate,
        key=common.key,
        server_cert=server_cert,
        window=config.getint("messaging", "send_window", default=20, minimum=1, maximum=1000),
        receipt_timeout=config.getfloat("messaging", "receipt_timeout", default=30.0, minimum=1,
                                        maximum=MAX_TIMEOUT, unit="seconds"),
        max_message_size=config.getint("messaging", "max_message_size", default=10 * 1024 * 1024,
                                       minimum=0, maximum=MAX_MESSAGE_SIZE, unit="bytes (0: no limit)"),
        reconnect_attempts=config.getint("broker", "reconnect_attempts", default=2, minimum=0, maximum=100),
        connect_timeout=common.connect_timeout,
        heartbeats=common.heartbeats,
        persistent=config.getbool("messaging", "persistent", default=True),
        sign_workers=config.getint("messaging", "sign_workers", default=1, minimum=0, maximum=64,
                                   unit="(0: one per CPU)"),
    )
    path = config.getpath("messaging", "path", kind=NEW_DIR)
    try:
        queue = open_outgoing(path, path_type)
    except QueueIOError as exc:
        raise FatalError(str(exc)) from None
    try:
        Sender(queue, common.brokers, common.tls, options).run()
    finally:
        log.info("SSM has shut down.")
        log.info("=" * 40)
    return 0


def main() -> None:
    run(_main, PROG)


if __name__ == "__main__":
    main()
