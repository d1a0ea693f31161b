"""INI configuration files as the APEL/SSM tools read them, with one-line errors.

Operators edit these files by hand, so every problem is reported as a single line
naming the file, the section, the option and what is wrong, and the program exits 1
(see ``acctbase.cli``). ``%`` is taken literally (no interpolation), unlike the existing
SSM, so tokens and passwords containing ``%`` work.
"""

from __future__ import annotations

import configparser
import ipaddress
import math
import os
import re
from collections.abc import Iterable
from typing import Callable, Optional, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_REQUIRED = object()
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


# What a path option names (see ConfigFile.getpath), and how an error describes it.
FILE = "file"  # certificate, key
DIR = "dir"  # CA path
NEW_DIR = "new-dir"  # queues
NEW_FILE = "new-file"  # log, pidfile
FILE_IN_DIR = "file-in-dir"  # apelauth's output
MAYBE_FILE = "maybe-file"  # optional DN lists
PATH_KINDS = {
    FILE: "an existing file",
    DIR: "an existing directory",
    NEW_DIR: "a directory (created with its parents if missing)",
    NEW_FILE: "a file path (its directory is created if missing)",
    FILE_IN_DIR: "a file path in an existing directory",
    MAYBE_FILE: "a file path (the file may be missing)",
}
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class ConfigError(Exception):
    """A configuration problem an operator must fix; the message is one line."""


class ConfigFile:
    """One INI file, read once, with typed getters that fail with a clear line."""

    def __init__(self, path: str, defaults: Optional[dict] = None) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise ConfigError(f"{self.path}: config file not found")
        self._parser = configparser.RawConfigParser(defaults=defaults)
        # keep option names as written (extra-dns, ...): configparser's documented hook
        self._parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            with open(self.path, encoding="utf-8") as handle:
                self._parser.read_file(handle)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: cannot read config file: {exc}") from exc
        except configparser.Error as exc:
            first_line = str(exc).splitlines()[0]
            raise ConfigError(f"{self.path}: not a valid INI file: {first_line}") from exc

    def error(self, section: str, option: Optional[str], problem: str) -> ConfigError:
        """Build the one-line error for ``[section] option`` in this file."""
        where = f"[{section}] {option}" if option else f"[{section}]"
        return ConfigError(f"{self.path}: {where}: {problem}")

    def has_section(self, section: str) -> bool:
        return self._parser.has_section(section)

    def has_option(self, section: str, option: str) -> bool:
        return self._parser.has_section(section) and self._parser.has_option(section, option)

    def options(self, section: str) -> list[str]:
        if not self._parser.has_section(section):
            return []
        return self._parser.options(section)

    def get(self, section: str, option: str, default: object = _REQUIRED) -> str:
        """The option's text, stripped; ``default`` when absent, or an error if required."""
        if not self._parser.has_section(section):
            if default is not _REQUIRED:
                return default  # type: ignore[return-value]
            raise self.error(section, None, "missing section")
        if not self._parser.has_option(section, option):
            if default is not _REQUIRED:
                return default  # type: ignore[return-value]
            raise self.error(section, option, "missing option")
        return self._parser.get(section, option).strip()

    def _raw(self, section: str, option: str, default: object) -> Optional[str]:
        """The option's text; None when it is absent and has a default (the caller's to return)."""
        if default is not _REQUIRED and not self.has_option(section, option):
            return None
        return self.get(section, option)

    def _convert(
        self, section: str, option: str, default: object, convert: Callable[[str], T], what: str
    ) -> T:
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            return convert(raw)
        except ValueError:
            raise self.error(section, option, f"{raw!r} is not {what}") from None

    def getint(
        self, section: str, option: str, default: object = _REQUIRED, *,
        minimum: int, maximum: int, unit: str = "",
    ) -> int:
        """A whole number within ``[minimum, maximum]``; the error states the range.

        Both bounds are required: an unbounded number in a config file is how a typo
        (an extra zero, a negative sign) turns into a crash or a hang far from its cause.
        """
        return self._ranged(section, option, default, int, "an integer", (minimum, maximum), unit)

    def getfloat(
        self, section: str, option: str, default: object = _REQUIRED, *,
        minimum: float, maximum: float, unit: str = "",
    ) -> float:
        """A finite number within ``[minimum, maximum]``: nan, inf and values that
        overflow to inf (1e400) are refused, whatever the range."""
        return self._ranged(section, option, default, float, "a number", (minimum, maximum), unit)

    def _ranged(
        self,
        section: str,
        option: str,
        default: object,
        parse: Callable[[str], T],
        what: str,
        bounds: tuple[float, float],
        unit: str,
    ) -> T:
        allowed = _allowed(bounds[0], bounds[1], unit)
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            value = parse(raw)
        except ValueError:
            raise self.error(section, option, f"{raw!r} is not {what}; {allowed}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(section, option, f"{raw!r} is not a finite number; {allowed}")
        if not bounds[0] <= value <= bounds[1]:  # type: ignore[operator]
            raise self.error(section, option, f"{raw!r} is out of range; {allowed}")
        return value

    def getpath(self, section: str, option: str, default: object = _REQUIRED, *, kind: str) -> str:
        """An absolute path that can serve as ``kind`` (one of ``PATH_KINDS``).

        Checked at start-up so that an empty value (which would mean the working
        directory), a directory where a file belongs or a missing certificate is
        one line naming the option, not an OSError deep inside a daemon.
        """
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        return self.check_path(section, option, raw, kind)

    def check_path(self, section: str, option: str, path: str, kind: str) -> str:
        """``path`` (already read from ``[section] option``) checked as for :meth:`getpath`."""
        problem = path_problem(path, kind)
        if problem:
            raise self.error(section, option, f"{problem}; expected {PATH_KINDS[kind]}")
        return os.path.abspath(path)

    def gethost(self, section: str, option: str, default: object = _REQUIRED) -> str:
        """A host name or IP address (a path or a URL here is a mistake, found at start-up)."""
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        problem = host_problem(raw)
        if problem:
            raise self.error(section, option, problem)
        return raw

    def geturl(
        self, section: str, option: str, default: object = _REQUIRED, *, schemes: Iterable[str]
    ) -> str:
        """An absolute URL with a host and one of ``schemes`` (a bare path or host is refused)."""
        schemes = tuple(schemes)
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme.lower() not in schemes or not parts.hostname:
            wanted = " or ".join(f"{scheme}://" for scheme in schemes)
            raise self.error(section, option, f"{raw!r} is not a URL starting with {wanted} and a host")
        return raw

    def getbool(self, section: str, option: str, default: object = _REQUIRED) -> bool:
        def convert(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)

        return self._convert(section, option, default, convert, "a boolean (true/false)")

    def getchoice(
        self, section: str, option: str, choices: Iterable[str], default: object = _REQUIRED
    ) -> str:
        """A value from ``choices``, matched case-insensitively, returned as listed."""
        choices = list(choices)
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise self.error(section, option, f"{raw!r} is not one of {', '.join(choices)}")

    def getlist(self, section: str, option: str, default: object = _REQUIRED) -> list[str]:
        """A comma-separated list; empty items are dropped."""
        raw = self._raw(section, option, default)
        if raw is None:
            return default  # type: ignore[return-value]
        return [item.strip() for item in raw.split(",") if item.strip()]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _allowed(minimum: float, maximum: float, unit: str) -> str:
    return f"allowed: {_number(minimum)} to {_number(maximum)}{' ' + unit if unit else ''}"


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def path_problem(path: str, kind: str) -> Optional[str]:
    """Why ``path`` cannot serve as ``kind`` (a key of ``PATH_KINDS``), or None when it can."""
    if kind not in PATH_KINDS:
        raise ValueError(f"unknown path kind {kind!r}")
    if not path:
        return "is empty"
    path = os.path.abspath(path)
    if kind == FILE:
        if not os.path.exists(path):
            return f"file not found: {path}"
        return None if os.path.isfile(path) else f"not a file: {path}"
    if kind == DIR:
        return None if os.path.isdir(path) else f"not a directory: {path}"
    if kind == NEW_DIR:
        existing = _nearest_existing(path)
        return None if os.path.isdir(existing) else f"{existing} is not a directory"
    if os.path.isdir(path):
        return f"{path} is a directory"
    parent = os.path.dirname(path)
    if kind == FILE_IN_DIR and not os.path.isdir(parent):
        return f"directory {parent} does not exist"
    existing = _nearest_existing(parent)
    return None if os.path.isdir(existing) else f"{existing} is not a directory"


def host_problem(host: str) -> Optional[str]:
    """Why ``host`` is neither a DNS name nor an IP address, or None when it is one."""
    if not host:
        return "must not be empty"
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        return f"{host!r} is not a host name or IP address"
    return None
