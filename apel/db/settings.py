"""``db.cfg`` ``[db]``: which backend to load and the settings it is given."""

from __future__ import annotations

from acctbase.config import ConfigFile
from apel.db.backend import Backend, load_backend
from apel.db.dialect import UnsupportedBackend

DEFAULT_DB_CONFIG = "/etc/apel/db.cfg"  # the -d default of every program that uses the database
DB_TYPES = ("cpu", "cloud")  # what the summariser summarises: job records or cloud records


def read_db_settings(config: ConfigFile) -> tuple[type[Backend], dict]:
    """The backend class named by ``[db] backend`` (default mysql) and every ``[db]``
    option as text, so a third-party backend receives its own options unchanged."""
    if not config.has_section("db"):
        raise config.error("db", None, "missing section")
    name = config.get("db", "backend", "mysql").lower()
    try:
        backend_class = load_backend(name)
    except KeyError as exc:
        raise config.error("db", "backend", str(exc.args[0])) from None
    except ImportError as exc:
        raise config.error("db", "backend", f"{name!r} cannot be loaded: {exc}") from None
    except UnsupportedBackend as exc:
        raise config.error("db", "backend", str(exc)) from None
    _check_typed_options(config)
    settings = {option: config.get("db", option) for option in config.options("db")}
    settings["backend"] = name
    return backend_class, settings


def _check_typed_options(config: ConfigFile) -> None:
    """The options of the built-in backends that are not free text, checked whichever
    backend is selected: a bad value is a mistake even where it is not used yet, and
    the backends then convert the text without a chance of failing."""
    if config.get("db", "hostname", ""):  # empty: the backend's default (localhost)
        config.gethost("db", "hostname")
    config.getint("db", "port", None, minimum=1, maximum=65535)
    config.getfloat("db", "connect_timeout", None, minimum=1, maximum=3600, unit="seconds")
    config.getfloat("db", "timeout", None, minimum=0, maximum=3600, unit="seconds")
    config.getbool("db", "local_infile", None)
    config.getchoice("db", "type", DB_TYPES, None)
