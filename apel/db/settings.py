"""``db.cfg`` ``[db]``: which backend to load and the settings it is given."""

from __future__ import annotations

from apel.db.backend import Backend, load_backend
from apel.db.dialect import UnsupportedBackend
from ssm.config import ConfigFile


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
    settings = {option: config.get("db", option) for option in config.options("db")}
    settings["backend"] = name
    return backend_class, settings
