"""ssmreceive: the receiving SSM service (systemd with --foreground, or a classic daemon).

Everything that can be checked is checked before the pidfile is taken and before
detaching, so a configuration or certificate problem ends in the terminal (or the
journal) with one line and exit 1. Stop signals are caught before anything else
(see ``acctbase.signals``), so this module imports nothing else at the top.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acctbase.signals import catch_signals

if TYPE_CHECKING:
    from acctbase.config import ConfigFile
    from ssm.receiver import ReceiverOptions
    from ssm.settings import CommonSettings

PROG = "ssmreceive"
DEFAULT_CONFIG = "/etc/apel/receiver.cfg"
DEFAULT_DNS = "/etc/apel/dns"


def _parse_args():
    from acctbase.cli import make_parser
    from ssm import __version__

    parser = make_parser(PROG, "Receive SSM messages from message brokers into directory queues.",
                         f"SSM {__version__}", DEFAULT_CONFIG)
    parser.add_argument("-d", "--dn_file", default=DEFAULT_DNS,
                        help=f"file of allowed signer DNs (default {DEFAULT_DNS})")
    parser.add_argument("--foreground", action="store_true",
                        help="do not detach (for systemd Type=simple and for debugging)")
    return parser.parse_args()


def _receiver_options(config: ConfigFile, common: CommonSettings) -> ReceiverOptions:
    from ssm.receiver import DEFAULT_MAX_MESSAGE_SIZE, ReceiverOptions

    return ReceiverOptions(
        destination=common.destination,
        certificate=common.certificate,
        key=common.key,
        capath=common.capath,
        check_crls=config.getbool("certificates", "check_crls"),
        heartbeats=common.heartbeats,
        connect_timeout=common.connect_timeout,
        subscribe_all=config.getbool("receiver", "subscribe_all", default=False),
        dn_refresh=config.getfloat("receiver", "dn_refresh", default=600.0, minimum=1, maximum=86400,
                                   unit="seconds"),
        batch_size=config.getint("receiver", "batch_size", default=50, minimum=1, maximum=1000),
        prefetch=config.getint("receiver", "prefetch", default=50, minimum=1, maximum=10000),
        max_message_size=config.getint("receiver", "max_message_size", default=DEFAULT_MAX_MESSAGE_SIZE,
                                       minimum=1024, maximum=1 << 31, unit="bytes"),
    )


def _main() -> int:
    import logging
    import os

    from acctbase.cli import FatalError, warn_deprecated
    from acctbase.config import NEW_DIR, NEW_FILE, ConfigFile
    from acctbase.logs import setup_logging
    from ssm import __version__

    args = _parse_args()
    config = ConfigFile(args.config)
    pidfile = config.getpath("daemon", "pidfile", kind=NEW_FILE)
    setup_logging(config)
    log = logging.getLogger(PROG)
    warn_deprecated(args)
    os.umask(0o077)

    from acctbase.daemon import run_service
    from ssm.allowed_dns import AllowedDNs, DNFileError
    from ssm.dirqueue import QueueIOError, open_incoming, open_reject
    from ssm.receiver import Receiver
    from ssm.settings import check_host_certificate, read_common

    common = read_common(config, "receiver")
    options = _receiver_options(config, common)
    base = config.getpath("messaging", "path", kind=NEW_DIR)
    log.info("Starting receiving SSM version %s.", __version__)
    dn = check_host_certificate(common.certificate, common.key)
    log.info("Messages will be decrypted using %s", dn)
    try:
        allowed = AllowedDNs(os.path.abspath(args.dn_file))
    except DNFileError as exc:
        raise FatalError(f"Failed to initialise SSM: {exc}") from None
    try:
        incoming = open_incoming(base)
        reject = open_reject(base)
    except QueueIOError as exc:
        raise FatalError(f"Failed to initialise SSM: {exc}") from None
    receiver = Receiver(common.brokers, common.tls, options, allowed, incoming, reject)
    return run_service(receiver.run, pidfile, args.foreground, on_reload=receiver.request_reload)


def main() -> None:
    """Console-script entry point; stop signals are caught before anything is imported or read."""
    catch_signals()
    from acctbase.cli import run

    run(_main, PROG)


if __name__ == "__main__":
    main()
