"""The shared INI config and logging module: one-line errors, exit 1, literal %."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from acctbase.config import DIR, FILE, FILE_IN_DIR, MAYBE_FILE, NEW_DIR, NEW_FILE, ConfigError, ConfigFile
from acctbase.logs import setup_logging

# A minimal program built the way every bin/ entry point is built.
PROGRAM = textwrap.dedent(
    """
    import sys
    from acctbase.cli import make_parser, run
    from acctbase.config import ConfigFile
    from acctbase.logs import setup_logging

    def main():
        args = make_parser("demo", "demo", "demo 1", "/etc/apel/demo.cfg").parse_args()
        config = ConfigFile(args.config)
        setup_logging(config)
        print("port", config.getint("broker", "port", minimum=1, maximum=65535))
        return 0

    run(main, "demo")
    """
)


def run_program(*args: str) -> subprocess.CompletedProcess:
    # umask 022 as a login shell has it: dirq leaves the test process at 077 after a
    # name collision in an in-process queue, and the log file mode checked below
    # would then depend on which tests ran before.
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=60, umask=0o022
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
    assert config.getint("a", "count", minimum=0, maximum=10) == 7
    assert config.getlist("a", "items") == ["x", "y", "z"]
    assert config.getfloat("a", "ratio", minimum=0, maximum=1) == 0.5
    assert config.get("a", "absent", default=None) is None
    with pytest.raises(ConfigError, match=r"\[a\] count: '7' is out of range; allowed: 0 to 5$"):
        config.getint("a", "count", minimum=0, maximum=5)
    with pytest.raises(ConfigError, match=r"\[a\] token: 'abc%def%%' is not an integer; allowed: 1 to 9"):
        config.getint("a", "token", minimum=1, maximum=9)
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


@pytest.mark.parametrize(
    "raw", ["", "nan", "inf", "-inf", "1e400", "-1", "99999999999999999999", "9" * 400, "ten", "0x10"]
)
def test_numbers_must_be_finite_and_within_their_range(tmp_path, raw):
    config = ConfigFile(write(tmp_path, f"[a]\nn = {raw}\n"))
    with pytest.raises(ConfigError) as float_error:
        config.getfloat("a", "n", minimum=0, maximum=3600, unit="seconds")
    assert str(float_error.value).endswith("allowed: 0 to 3600 seconds")
    assert f"[a] n: {raw!r} is " in str(float_error.value)
    with pytest.raises(ConfigError, match=r"\[a\] n: .* allowed: 0 to 3600$"):
        config.getint("a", "n", minimum=0, maximum=3600)


def test_numbers_at_their_bounds_and_defaults_are_taken(tmp_path):
    config = ConfigFile(write(tmp_path, "[a]\nlow = 0\nhigh = 3600\nfraction = 0.25\n"))
    assert config.getint("a", "low", minimum=0, maximum=3600) == 0
    assert config.getint("a", "high", minimum=0, maximum=3600) == 3600
    assert config.getfloat("a", "fraction", minimum=0, maximum=1) == 0.25
    assert config.getfloat("a", "absent", 2.5, minimum=0, maximum=1) == 2.5  # a default is not checked
    assert config.getint("a", "absent", None, minimum=1, maximum=2) is None


def test_paths_are_checked_for_what_they_must_name(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    adir = tmp_path / "adir"
    adir.mkdir()
    config = ConfigFile(write(tmp_path, f"""
        [p]
        empty =
        file = {afile}
        dir = {adir}
        missing = {tmp_path}/missing/sub/x
        under_file = {afile}/x
        """))
    assert config.getpath("p", "file", kind=FILE) == str(afile)
    assert config.getpath("p", "dir", kind=DIR) == str(adir)
    assert config.getpath("p", "missing", kind=NEW_DIR) == f"{tmp_path}/missing/sub/x"
    assert config.getpath("p", "missing", kind=NEW_FILE) == f"{tmp_path}/missing/sub/x"
    assert config.getpath("p", "missing", kind=MAYBE_FILE) == f"{tmp_path}/missing/sub/x"
    refused = [
        ("empty", NEW_FILE, "is empty; expected a file path"),
        ("dir", FILE, "not a file"),
        ("dir", NEW_FILE, "is a directory; expected a file path"),
        ("dir", MAYBE_FILE, "is a directory"),
        ("file", DIR, "not a directory"),
        ("file", NEW_DIR, "is not a directory"),
        ("missing", FILE, "file not found"),
        ("missing", FILE_IN_DIR, f"directory {tmp_path}/missing/sub does not exist"),
        ("under_file", NEW_FILE, f"{afile} is not a directory"),
    ]
    for option, kind, problem in refused:
        with pytest.raises(ConfigError, match=rf"\[p\] {option}: .*{re.escape(problem)}"):
            config.getpath("p", option, kind=kind)


def test_urls_need_a_scheme_and_a_host_and_hosts_must_be_names(tmp_path):
    config = ConfigFile(write(tmp_path, """
        [u]
        good = https://goc.example.org/pi?x=1
        ldap = ldap://bdii.example.org:2170
        bare = proxy.example.org:3128
        path = /tmp/proxy
        badport = http://h:port/
        host = broker-1.example.org
        v6 = ::1
        slash = /var/lib/mysql
        hyphen = -1
        """))
    assert config.geturl("u", "good", schemes=("http", "https")) == "https://goc.example.org/pi?x=1"
    assert config.geturl("u", "ldap", schemes=("ldap",)) == "ldap://bdii.example.org:2170"
    for option in ("bare", "path", "badport", "ldap"):
        with pytest.raises(ConfigError, match=rf"\[u\] {option}: .* is not a URL starting with http://"):
            config.geturl("u", option, schemes=("http", "https"))
    assert config.gethost("u", "host") == "broker-1.example.org"
    assert config.gethost("u", "v6") == "::1"
    for option in ("slash", "hyphen"):
        with pytest.raises(ConfigError, match=rf"\[u\] {option}: .* is not a host name or IP address"):
            config.gethost("u", option)


# A program whose failure happens after logging went to the console (stdout).
FAILING_PROGRAM = textwrap.dedent(
    """
    import os
    from acctbase.cli import FatalError, make_parser, run
    from acctbase.config import ConfigFile
    from acctbase.logs import setup_logging

    def main():
        args = make_parser("demo", "demo", "demo 1", "/etc/apel/demo.cfg").parse_args()
        setup_logging(ConfigFile(args.config))
        if os.environ["DEMO_FAILURE"] == "bug":
            {}["no such key"]
        raise FatalError("the broker said no\\nreally")

    run(main, "demo")
    """
)


@pytest.mark.parametrize("failure", ["fatal", "bug"])
def test_a_failure_is_one_line_on_stderr_also_when_logging_to_the_console(tmp_path, failure):
    log = tmp_path / "demo.log"
    path = write(tmp_path, f"""
        [logging]
        logfile = {log}
        level = INFO
        console = true
        """)
    result = subprocess.run([sys.executable, "-c", FAILING_PROGRAM, "-c", path], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "DEMO_FAILURE": failure})
    assert result.returncode == 1
    expected = "demo: the broker said no really" if failure == "fatal" else \
        "demo: internal error: KeyError: 'no such key'"
    assert result.stderr.splitlines() == [expected]
    assert "Traceback" not in result.stdout + result.stderr
    assert "no such key" not in result.stdout and "broker said" not in result.stdout  # shown once
    logged = log.read_text()
    assert ("Traceback" in logged) == (failure == "bug")
    assert ("said no" in logged) == (failure == "fatal")
