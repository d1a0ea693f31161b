"""INI configuration files as the APEL/SSM tools read them, with one-line errors.

Operators edit these files by hand, so every problem is reported as a single line
naming the file, the section, the option and what is wrong, and the program exits 1
(see ``ssm.cli``). ``%`` is taken literally (no interpolation), unlike the existing
SSM, so tokens and passwords containing ``%`` work.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

_REQUIRED = object()
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


class ConfigError(Exception):
    """A configuration problem an operator must fix; the message is one line."""


class ConfigFile:
    """One INI file, read once, with typed getters that fail with a clear line."""

    def __init__(self, path: str, defaults: Optional[dict] = None) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise ConfigError(f"{self.path}: config file not found")
        self._parser = configparser.RawConfigParser(defaults=defaults)
        self._parser.optionxform = str  # keep option names as written (extra-dns, ...)
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

    def _convert(
        self, section: str, option: str, default: object, convert: Callable[[str], T], what: str
    ) -> T:
        raw = self.get(section, option, default)
        if raw is default and default is not _REQUIRED:
            return raw  # type: ignore[return-value]
        try:
            return convert(raw)
        except ValueError:
            raise self.error(section, option, f"{raw!r} is not {what}") from None

    def getint(
        self,
        section: str,
        option: str,
        default: object = _REQUIRED,
        minimum: Optional[int] = None,
        maximum: Optional[int] = None,
    ) -> int:
        value = self._convert(section, option, default, int, "an integer")
        if value is not None and minimum is not None and value < minimum:
            raise self.error(section, option, f"{value} is below the minimum {minimum}")
        if value is not None and maximum is not None and value > maximum:
            raise self.error(section, option, f"{value} is above the maximum {maximum}")
        return value

    def getfloat(self, section: str, option: str, default: object = _REQUIRED) -> float:
        return self._convert(section, option, default, float, "a number")

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
        raw = self.get(section, option, default)
        if raw is default and default is not _REQUIRED:
            return raw  # type: ignore[return-value]
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise self.error(section, option, f"{raw!r} is not one of {', '.join(choices)}")

    def getlist(self, section: str, option: str, default: object = _REQUIRED) -> list[str]:
        """A comma-separated list; empty items are dropped."""
        raw = self.get(section, option, default)
        if raw is default and default is not _REQUIRED:
            return raw  # type: ignore[return-value]
        return [item.strip() for item in raw.split(",") if item.strip()]
