"""The shared INI config and logging module: one-line errors, exit 1, literal %."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ssm.config import ConfigError, ConfigFile
from ssm.logs import setup_logging

# A minimal program built the way every bin/ entry point is built.
PROGRAM = textwrap.dedent(
    """
    import sys
    from ssm.cli import make_parser, run
    from ssm.config import ConfigFile
    from ssm.logs import setup_logging

    def main():
        args = make_parser("demo", "demo", "demo 1", "/etc/apel/demo.cfg").parse_args()
        config = ConfigFile(args.config)
        setup_logging(config)
        print("port", config.getint("broker", "port"))
        return 0

    run(main, "demo")
    """
)


def run_program(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=60
    )


def write(tmp_path, text: str) -> str:
    path = tmp_path / "demo.cfg"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_missing_config_file_is_one_line_and_exit_1(tmp_path):
    missing = tmp_path / "nope.cfg"
    result = run_program("-c", str(missing))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"demo: {missing}: config file not found"]
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_option_names_file_section_and_option(tmp_path):
    log = tmp_path / "demo.log"
    path = write(tmp_path, f"""
        [logging]
        logfile = {log}
        level = INFO
        console = false
        [broker]
        host = localhost
        """)
    result = run_program("-c", path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"demo: {path}: [broker] port: missing option"]
    assert "[broker] port: missing option" in log.read_text()


def test_bad_value_and_missing_section(tmp_path):
    path = write(tmp_path, """
        [logging]
        logfile =
        level = LOUD
        """)
    result = run_program("-c", path)
    assert result.returncode == 1
    assert "[logging] level: 'LOUD' is not one of DEBUG, INFO, WARN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    path = write(tmp_path, """
        [logging]
        logfile =
        """)
    result = run_program("-c", path)
    assert result.returncode == 1
    assert result.stdout.count("\n") <= 1 and "Traceback" not in result.stdout
    assert "[broker]: missing section" in result.stdout + result.stderr


def test_good_config_runs_and_logs_in_apel_format(tmp_path):
    log = tmp_path / "sub" / "demo.log"
    path = write(tmp_path, f"""
        [logging]
        logfile: {log}
        level: DEBUG
        console: true
        [broker]
        port: 61613
        """)
    result = run_program("-c", path)
    assert result.returncode == 0, result.stderr
    assert "port 61613" in result.stdout
    assert oct(os.stat(log).st_mode & 0o777) == "0o640"


def test_typed_getters_and_literal_percent(tmp_path):
    path = write(tmp_path, """
        [a]
        token = abc%def%%
        flag = Yes
        count = 7
        items = x, y,,z
        ratio = 0.5
        """)
    config = ConfigFile(path)
    assert config.get("a", "token") == "abc%def%%"
    assert config.getbool("a", "flag") is True
    assert config.getint("a", "count", maximum=10) == 7
    assert config.getlist("a", "items") == ["x", "y", "z"]
    assert config.getfloat("a", "ratio") == 0.5
    assert config.get("a", "absent", default=None) is None
    with pytest.raises(ConfigError, match=r"\[a\] count: 7 is above the maximum 5"):
        config.getint("a", "count", maximum=5)
    with pytest.raises(ConfigError, match=r"\[a\] token: 'abc%def%%' is not an integer"):
        config.getint("a", "token")
    with pytest.raises(ConfigError, match=r"\[a\] ratio: '0.5' is not a boolean"):
        config.getbool("a", "ratio")


def test_unreadable_ini_is_a_config_error(tmp_path):
    path = write(tmp_path, "no section header\n")
    with pytest.raises(ConfigError, match="not a valid INI file"):
        ConfigFile(path)


def test_logging_to_unwritable_place_is_config_error(tmp_path):
    path = write(tmp_path, """
        [logging]
        logfile = /proc/forbidden/demo.log
        level = INFO
        console = false
        """)
    with pytest.raises(ConfigError, match=r"\[logging\] logfile: cannot open"):
        setup_logging(ConfigFile(path))
