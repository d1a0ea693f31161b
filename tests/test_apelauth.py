"""apelauth end to end: the real console script against GOCDB pages served on loopback.

A threaded ``http.server`` on 127.0.0.1 plays the GOCDB PI (pages of
``SERVICE_ENDPOINT`` with ``<meta><link rel="next">`` links), and a second one plays
an HTTP proxy that records what reaches it. Each test writes an auth.cfg in its
tmp_path and runs ``.venv/bin/apelauth`` as a subprocess, as cron would.
"""

from __future__ import annotations

import http.server
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape

import pytest

import apel

pytestmark = pytest.mark.timeout(30)

APELAUTH = str(Path(sys.executable).with_name("apelauth"))
QUERY = "/gocdbpi/public/?method=get_service_endpoint&service_type=gLite-APEL"


# --------------------------------------------------------------------------- GOCDB XML


def endpoint(key: int, hostname: str, hostdn: Optional[str], site: str = "UKI-TEST") -> str:
    """One SERVICE_ENDPOINT as get_service_endpoint returns it (None: no HOSTDN element)."""
    dn = "" if hostdn is None else f"    <HOSTDN>{escape(hostdn)}</HOSTDN>\n"
    return (
        f'  <SERVICE_ENDPOINT PRIMARY_KEY="{key}G0">\n'
        f"    <PRIMARY_KEY>{key}G0</PRIMARY_KEY>\n"
        f"    <HOSTNAME>{hostname}</HOSTNAME>\n"
        f"    <GOCDB_PORTAL_URL>https://goc.egi.eu/portal/index.php?Page_Type=Service&amp;id={key}"
        f"</GOCDB_PORTAL_URL>\n"
        "    <BETA>N</BETA>\n"
        "    <SERVICE_TYPE>gLite-APEL</SERVICE_TYPE>\n"
        "    <CORE/>\n"
        "    <IN_PRODUCTION>Y</IN_PRODUCTION>\n"
        "    <NODE_MONITORED>Y</NODE_MONITORED>\n"
        "    <NOTIFICATIONS>Y</NOTIFICATIONS>\n"
        f"    <SITENAME>{site}</SITENAME>\n"
        "    <COUNTRY_NAME>United Kingdom</COUNTRY_NAME>\n"
        "    <COUNTRY_CODE>GB</COUNTRY_CODE>\n"
        "    <ROC_NAME>NGI_UK</ROC_NAME>\n"
        "    <URL/>\n"
        "    <ENDPOINTS/>\n"
        f"{dn}"
        "    <SCOPES><SCOPE>EGI</SCOPE><SCOPE>wlcg</SCOPE></SCOPES>\n"
        "    <EXTENSIONS/>\n"
        "  </SERVICE_ENDPOINT>\n"
    )


def page_path(number: int) -> str:
    return QUERY if number == 1 else f"{QUERY}&page={number}"


def results(base: str, number: int, endpoints: list[str], has_next: bool) -> bytes:
    """A PI page with its meta links; the next link is absolute and XML-escaped as GOCDB does."""
    links = [f'    <link rel="self" href="{escape(base + page_path(number))}"/>\n']
    if has_next:
        links.append(f'    <link rel="next" href="{escape(base + page_path(number + 1))}"/>\n')
    links.append(f'    <link rel="start" href="{escape(base + page_path(1))}"/>\n')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<results>\n  <meta>\n'
        + "".join(links)
        + "  </meta>\n"
        + "".join(endpoints)
        + "</results>\n"
    ).encode()


def dns_of(count: int, prefix: str = "host") -> list[str]:
    return [f"/C=UK/O=eScience/OU=CLRC/L=RAL/CN={prefix}{i}.example.ac.uk" for i in range(count)]


# --------------------------------------------------------------------------- servers


class _GocdbHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests.append(self.path)
        self.server.answer(self, self.path)

    def log_message(self, *args: object) -> None:
        pass


class FakeGocdb(http.server.ThreadingHTTPServer):
    """GOCDB PI stand-in: ``routes`` maps path+query to (status, body, delay seconds)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GocdbHandler)
        self.routes: dict[str, tuple[int, bytes, float]] = {}
        self.requests: list[str] = []
        self.unsized: set[str] = set()  # paths answered without Content-Length, then closed
        self.trickle: set[str] = set()  # paths whose body is sent a few bytes every 0.2 s
        self.base = f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def url(self) -> str:
        return self.base + QUERY

    def serve_pages(self, pages: list[list[str]], base: Optional[str] = None) -> None:
        """Serve ``pages`` (lists of endpoint XML) as page 1..N with next links."""
        for index, endpoints in enumerate(pages, start=1):
            body = results(base or self.base, index, endpoints, index < len(pages))
            self.routes[page_path(index)] = (200, body, 0.0)

    def answer(self, handler: http.server.BaseHTTPRequestHandler, path: str) -> None:
        status, body, delay = self.routes.get(path, (404, b"not found", 0.0))
        if delay:
            time.sleep(delay)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/xml; charset=UTF-8")
            if path in self.unsized or path in self.trickle:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            else:
                handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            if path in self.trickle:
                for start in range(0, min(len(body), 400), 8):  # bounded: at most 10 s
                    handler.wfile.write(body[start:start + 8])
                    handler.wfile.flush()
                    time.sleep(0.2)
            else:
                handler.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout and size tests)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        self.server.seen.append(("GET", self.path))
        parts = urllib.parse.urlsplit(self.path)
        self.server.gocdb.answer(self, f"{parts.path}?{parts.query}")

    def do_CONNECT(self) -> None:  # noqa: N802
        self.server.seen.append(("CONNECT", self.path))
        self.send_response(403, "tunnels not allowed in this test")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


class RecordingProxy(http.server.ThreadingHTTPServer):
    """Forward-proxy stand-in: answers GETs from the fake GOCDB, refuses CONNECT; records both."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, gocdb: FakeGocdb) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.gocdb = gocdb
        self.seen: list[tuple[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def _start(server: http.server.HTTPServer):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def gocdb():
    server = FakeGocdb()
    thread = _start(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(gocdb):
    server = RecordingProxy(gocdb)
    thread = _start(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- running apelauth


def write_config(tmp_path: Path, url: str, **options: object) -> Path:
    """auth.cfg in tmp_path; option names use _ for - (extra_dns -> extra-dns) except the new ones."""
    auth = {"gocdb_url": url, "allowed-dns": str(tmp_path / "etc" / "dns"), "timeout": 5}
    for key, value in options.items():
        name = key.replace("_", "-") if key in ("extra_dns", "banned_dns", "allowed_dns") else key
        auth[name] = value
    (tmp_path / "etc").mkdir(exist_ok=True)
    lines = ["[auth]"] + [f"{key} = {value}" for key, value in auth.items() if value is not None]
    lines += ["", "[logging]", f"logfile = {tmp_path / 'apelauth.log'}", "level = DEBUG", "console = false"]
    path = tmp_path / "auth.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_apelauth(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    return subprocess.run(
        [APELAUTH, "-c", str(config), *args],
        capture_output=True, text=True, timeout=20, env=env, umask=0o077,
    )


def dn_file(tmp_path: Path) -> Path:
    return tmp_path / "etc" / "dns"


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "apelauth.log").read_text()


def assert_one_line_failure(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def existing_file(tmp_path: Path, dns: list[str], age_hours: float = 0.0) -> tuple[bytes, float]:
    """Create the current DN file; returns its bytes and mtime to check it was kept."""
    path = dn_file(tmp_path)
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"{dn}\n" for dn in dns))
    if age_hours:
        past = time.time() - age_hours * 3600
        os.utime(path, (past, past))
    return path.read_bytes(), path.stat().st_mtime


def assert_kept(tmp_path: Path, before: tuple[bytes, float]) -> None:
    path = dn_file(tmp_path)
    assert path.read_bytes() == before[0]
    assert path.stat().st_mtime == before[1]
    assert [p.name for p in path.parent.iterdir()] == ["dns"], "temporary file left behind"


# --------------------------------------------------------------------------- tests: success


def test_version_flag():
    result = subprocess.run([APELAUTH, "-v"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0
    assert result.stdout.strip() == f"APEL {apel.__version__}"


def test_follows_next_links_and_keeps_only_valid_distinct_dns(gocdb, tmp_path):
    good = dns_of(6)
    gocdb.serve_pages([
        [endpoint(1, "apel1.example.ac.uk", good[0]), endpoint(2, "nodn.example.ac.uk", None),
         endpoint(3, "apel3.example.ac.uk", "  " + good[1] + "\n  ")],
        [endpoint(4, "apel4.example.ac.uk", good[2]), endpoint(5, "dup.example.ac.uk", good[0]),
         endpoint(6, "comma.example.ac.uk", "C = UK, O = eScience, CN = comma.example.ac.uk"),
         endpoint(7, "empty.example.ac.uk", "")],
        [endpoint(8, "short.example.ac.uk", "/CN=short.example.ac.uk"),
         endpoint(9, "bad.example.ac.uk", "/C=UK/OU=Uni, /CN=bad.example.ac.uk"),
         endpoint(10, "apel10.example.ac.uk", good[3]),
         endpoint(11, "spaces.example.ac.uk", "/C=DE/O=GermanGrid/OU=Something, Somewhere/L=A City/CN=x"),
         endpoint(12, "service.example.ac.uk", "/C=DE/O=GermanGrid/OU=DESY/CN=host/apel.desy.de")],
    ])
    result = run_apelauth(write_config(tmp_path, gocdb.url))
    assert result.returncode == 0, result.stderr
    assert dn_file(tmp_path).read_text().splitlines() == [
        good[0], good[1], good[2], good[3],
        "/C=DE/O=GermanGrid/OU=Something, Somewhere/L=A City/CN=x",
        "/C=DE/O=GermanGrid/OU=DESY/CN=host/apel.desy.de",
    ]
    assert gocdb.requests == [page_path(1), page_path(2), page_path(3)]
    log = log_text(tmp_path)
    assert "Fetched 10 DNs from GOCDB over 3 page(s): 12 endpoints, 2 of them without HOSTDN" in log
    assert "3 invalid skipped, 1 duplicates dropped" in log
    warnings = [line for line in log.splitlines() if "WARNING - Invalid DN from GOCDB skipped" in line]
    assert len(warnings) == 3
    expected = ("C = UK, O = eScience", "'/CN=short.example.ac.uk'", "'/C=UK/OU=Uni, /CN=bad.example.ac.uk'")
    for bad, warning in zip(expected, warnings):
        assert bad in warning


def test_extra_and_banned_files_as_in_the_spec_example(gocdb, tmp_path):
    gocdb.serve_pages(
        [[endpoint(1, "a", "/basic/dn"), endpoint(2, "b", "/banned/dn"), endpoint(3, "c", "invalid")]]
    )
    (tmp_path / "extra").write_text("#comment\n/extra/dn\n\n  /banned/dn  \n")
    (tmp_path / "banned").write_text("# hosts we no longer trust\n/banned/dn\n")
    config = write_config(tmp_path, gocdb.url, extra_dns=tmp_path / "extra", banned_dns=tmp_path / "banned")
    result = run_apelauth(config)
    assert result.returncode == 0, result.stderr
    assert dn_file(tmp_path).read_text() == "/basic/dn\n/extra/dn\n"
    assert "1 from GOCDB, +1 from extra-dns, -2 banned, 1 invalid skipped" in log_text(tmp_path)


def test_missing_extra_and_banned_files_only_warn(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", dns_of(1)[0])]])
    config = write_config(tmp_path, gocdb.url, extra_dns=tmp_path / "nope1", banned_dns=tmp_path / "nope2")
    assert run_apelauth(config).returncode == 0
    assert "banned-dns file" in log_text(tmp_path) and "does not exist" in log_text(tmp_path)


def test_unreadable_banned_file_stops_the_run(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", dns_of(1)[0])]])
    before = existing_file(tmp_path, dns_of(1))
    (tmp_path / "banned").mkdir()  # exists, cannot be read as a file (works as root too)
    result = run_apelauth(write_config(tmp_path, gocdb.url, banned_dns=tmp_path / "banned"))
    assert_one_line_failure(result, "[auth] banned-dns", "is a directory")
    assert_kept(tmp_path, before)


def test_write_is_atomic_with_mode_0644_whatever_the_umask(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(i, f"h{i}", dn) for i, dn in enumerate(dns_of(5))]])
    existing_file(tmp_path, dns_of(4))
    old_inode = dn_file(tmp_path).stat().st_ino
    result = run_apelauth(write_config(tmp_path, gocdb.url))  # run with umask 077
    assert result.returncode == 0, result.stderr
    info = dn_file(tmp_path).stat()
    assert stat.S_IMODE(info.st_mode) == 0o644
    assert info.st_ino != old_inode  # a new file renamed over the old one, not rewritten in place
    assert dn_file(tmp_path).read_text() == "".join(f"{dn}\n" for dn in dns_of(5))
    assert [p.name for p in dn_file(tmp_path).parent.iterdir()] == ["dns"]
    assert "Wrote 5 DNs to" in log_text(tmp_path) and "(previously 4 DNs)" in log_text(tmp_path)


def test_missing_file_is_created(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", dns_of(1)[0])]])
    result = run_apelauth(write_config(tmp_path, gocdb.url))
    assert result.returncode == 0, result.stderr
    assert dn_file(tmp_path).read_text() == dns_of(1)[0] + "\n"
    assert "(previously no file)" in log_text(tmp_path)


def test_relative_next_link_is_followed(gocdb, tmp_path):
    relative = (
        b'<link rel="next" href="?method=get_service_endpoint&amp;service_type=gLite-APEL&amp;page=2"/>'
    )
    body1 = results(gocdb.base, 1, [endpoint(1, "a", dns_of(2)[0])], False).replace(
        b"</meta>", relative + b"</meta>"
    )
    gocdb.routes[page_path(1)] = (200, body1, 0.0)
    gocdb.routes[page_path(2)] = (200, results(gocdb.base, 2, [endpoint(2, "b", dns_of(2)[1])], False), 0.0)
    assert run_apelauth(write_config(tmp_path, gocdb.url)).returncode == 0
    assert dn_file(tmp_path).read_text().splitlines() == dns_of(2)


# --------------------------------------------------------------------------- tests: guards


def test_empty_result_is_refused_and_old_file_kept(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", None), endpoint(2, "b", "not a dn")], [endpoint(3, "c", None)]])
    before = existing_file(tmp_path, dns_of(3))
    result = run_apelauth(write_config(tmp_path, gocdb.url))
    assert_one_line_failure(result, "DN file not updated", "empty DN list", "--force")
    assert_kept(tmp_path, before)


def test_empty_result_is_refused_even_without_a_file(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", None)]])
    assert_one_line_failure(run_apelauth(write_config(tmp_path, gocdb.url)), "empty DN list")
    assert not dn_file(tmp_path).exists()


def test_shrink_over_half_is_refused_unless_forced(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(i, f"h{i}", dn) for i, dn in enumerate(dns_of(4))]])
    before = existing_file(tmp_path, dns_of(10))
    config = write_config(tmp_path, gocdb.url)
    line = assert_one_line_failure(run_apelauth(config), "from 10 to 4 DNs", "60% fewer", "max_shrink = 0.5")
    assert "--force" in line
    assert_kept(tmp_path, before)

    forced = run_apelauth(config, "--force")
    assert forced.returncode == 0, forced.stderr
    assert dn_file(tmp_path).read_text().splitlines() == dns_of(4)
    assert "--force given, writing anyway" in log_text(tmp_path)


def test_shrink_within_the_limit_is_written_and_max_shrink_is_configurable(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(i, f"h{i}", dn) for i, dn in enumerate(dns_of(8))]])
    existing_file(tmp_path, dns_of(10))
    before = existing_file(tmp_path, dns_of(10))
    strict = run_apelauth(write_config(tmp_path, gocdb.url, max_shrink=0.1))
    assert_one_line_failure(strict, "20% fewer", "max_shrink = 0.1")
    assert_kept(tmp_path, before)
    assert run_apelauth(write_config(tmp_path, gocdb.url)).returncode == 0  # 20% <= default 50%
    assert dn_file(tmp_path).read_text().splitlines() == dns_of(8)


# --------------------------------------------------------------------------- tests: fetch failures


def _xml_bomb() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{"".join(f"&lol{i - 1};" for _ in range(10))}">' for i in range(1, 10)
    ]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE results [\n' + "\n".join(entities) + "\n]>\n"
        "<results><SERVICE_ENDPOINT><HOSTDN>/C=UK/CN=&lol9;</HOSTDN></SERVICE_ENDPOINT></results>\n"
    ).encode()


def _xxe() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE results [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        b"<results><SERVICE_ENDPOINT><HOSTDN>/C=UK/CN=&x;</HOSTDN></SERVICE_ENDPOINT></results>\n"
    )


def _break_page_two(gocdb: FakeGocdb, how: str) -> dict:
    """Make page 2 of 3 fail in one way; returns extra config options the case needs."""
    gocdb.serve_pages(
        [[endpoint(i * 10 + j, f"h{i}{j}", f"/C=UK/CN=h{i}{j}") for j in range(3)] for i in range(3)]
    )
    options: dict = {}
    if how == "http-500":
        gocdb.routes[page_path(2)] = (500, b"<html>Internal Server Error</html>", 0.0)
    elif how == "malformed-xml":
        gocdb.routes[page_path(2)] = (200, gocdb.routes[page_path(2)][1][:-40], 0.0)
    elif how == "html-page":
        gocdb.routes[page_path(2)] = (200, b"<html><body>GOCDB is down for maintenance</body></html>", 0.0)
    elif how == "empty-body":
        gocdb.routes[page_path(2)] = (200, b"", 0.0)
    elif how == "oversized":
        filler = [endpoint(100 + k, f"big{k}", f"/C=UK/CN=big{k}") for k in range(40)]
        gocdb.routes[page_path(2)] = (200, results(gocdb.base, 2, filler, True), 0.0)
        options["max_page_bytes"] = 8192
    elif how == "oversized-unsized":
        filler = [endpoint(100 + k, f"big{k}", f"/C=UK/CN=big{k}") for k in range(40)]
        gocdb.routes[page_path(2)] = (200, results(gocdb.base, 2, filler, True), 0.0)
        gocdb.unsized.add(page_path(2))
        options["max_page_bytes"] = 8192
    elif how == "trickle":
        gocdb.trickle.add(page_path(2))
        options["timeout"] = 1
    elif how == "slow":
        status, body, _ = gocdb.routes[page_path(2)]
        gocdb.routes[page_path(2)] = (status, body, 4.0)
        options["timeout"] = 1
    elif how == "paging-loop":
        # page 3 links "next" back to page 1
        loop = results(gocdb.base, 0, [endpoint(99, "x", "/C=UK/CN=x")], True)
        gocdb.routes[page_path(3)] = (200, loop, 0.0)
    elif how == "too-many-pages":
        options["max_pages"] = 2
    elif how == "next-to-file-url":
        body = gocdb.routes[page_path(2)][1].replace(
            f'rel="next" href="{gocdb.base}'.encode(), b'rel="next" href="file:///etc/passwd#')
        gocdb.routes[page_path(2)] = (200, body, 0.0)
    elif how == "xml-bomb":
        gocdb.routes[page_path(2)] = (200, _xml_bomb(), 0.0)
    elif how == "external-entity":
        gocdb.routes[page_path(2)] = (200, _xxe(), 0.0)
    return options


FAILURES = {
    "http-500": "HTTP 500",
    "malformed-xml": "not well-formed XML",
    "html-page": "expected <results>",
    "empty-body": "not well-formed XML",
    "oversized": "max_page_bytes = 8192",
    "oversized-unsized": "response is over max_page_bytes = 8192",
    "trickle": "page not complete within timeout = 1 s",
    "slow": "no answer within 1 s",
    "paging-loop": "paging loop",
    "too-many-pages": "max_pages = 2",
    "next-to-file-url": "non-HTTP URL",
    "xml-bomb": "unsafe XML",
    "external-entity": "unsafe XML",
}


@pytest.mark.parametrize("how", sorted(FAILURES))
def test_failed_fetch_keeps_the_old_file(gocdb, tmp_path, how):
    options = _break_page_two(gocdb, how)
    before = existing_file(tmp_path, dns_of(9))
    result = run_apelauth(write_config(tmp_path, gocdb.url, **options))
    # "slow" and "trickle": the 1 s timeout fired (without it the page would have
    # arrived after 4 s, or been cut short at 400 bytes: another error).
    assert_one_line_failure(result, "DN file not updated: GOCDB", FAILURES[how], "keeping")
    assert_kept(tmp_path, before)


@pytest.fixture
def slow_loris():
    """A server that answers every request with HTTP headers sent one byte every 0.5 s (for 60 s)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nX-Padding: " + b"x" * 200:
                if stop.wait(0.5):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}{QUERY}"
    stop.set()
    listener.close()


def test_a_server_trickling_its_headers_meets_the_run_deadline(slow_loris, tmp_path):
    """Every read gets a byte within the 5 s timeout; only the overall deadline ends the run."""
    before = existing_file(tmp_path, dns_of(3))
    result = run_apelauth(write_config(tmp_path, slow_loris, timeout=5, deadline=2))
    assert_one_line_failure(result, "DN file not updated: GOCDB not read within deadline = 2 s", "keeping")
    assert_kept(tmp_path, before)


def test_server_down_keeps_the_old_file(tmp_path):
    before = existing_file(tmp_path, dns_of(3))
    url = f"http://127.0.0.1:{closed_port()}{QUERY}"
    assert_one_line_failure(run_apelauth(write_config(tmp_path, url)), "GOCDB page 1", "refused", "keeping")
    assert_kept(tmp_path, before)


def test_failed_fetch_without_a_file_is_an_error_not_a_crash(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}{QUERY}"
    line = assert_one_line_failure(run_apelauth(write_config(tmp_path, url)))
    assert "does not exist and no DN list was written" in line
    assert not dn_file(tmp_path).exists()


def test_expire_hours_young_file_is_kept_even_when_forced(gocdb, tmp_path):
    _break_page_two(gocdb, "http-500")
    before = existing_file(tmp_path, dns_of(9), age_hours=1)
    result = run_apelauth(write_config(tmp_path, gocdb.url, expire_hours=6), "--force")
    assert_one_line_failure(result, "within expire_hours = 6")
    assert_kept(tmp_path, before)


def test_expire_hours_old_file_is_kept_unless_forced_then_partial_list_written(gocdb, tmp_path):
    _break_page_two(gocdb, "http-500")
    (tmp_path / "extra").write_text("/C=UK/CN=extra\n")
    before = existing_file(tmp_path, dns_of(9), age_hours=10)
    config = write_config(tmp_path, gocdb.url, expire_hours=6, extra_dns=tmp_path / "extra")
    line = assert_one_line_failure(run_apelauth(config), "keeping", "past expire_hours = 6", "--force")
    assert "although it is 10.0 h old" in line
    assert_kept(tmp_path, before)

    forced = run_apelauth(config, "--force")
    assert forced.returncode == 0, forced.stderr
    assert dn_file(tmp_path).read_text().splitlines() == ["/C=UK/CN=h00", "/C=UK/CN=h01", "/C=UK/CN=h02",
                                                          "/C=UK/CN=extra"]


# --------------------------------------------------------------------------- tests: proxy


def test_proxy_is_used_for_http_when_direct_fails(gocdb, proxy, tmp_path):
    unreachable = f"http://127.0.0.1:{closed_port()}"
    gocdb.serve_pages([[endpoint(1, "a", dns_of(2)[0])], [endpoint(2, "b", dns_of(2)[1])]], base=unreachable)
    config = write_config(tmp_path, unreachable + QUERY, proxy=proxy.url)
    result = run_apelauth(config)
    assert result.returncode == 0, result.stderr
    assert dn_file(tmp_path).read_text().splitlines() == dns_of(2)
    assert proxy.seen == [("GET", unreachable + page_path(1)), ("GET", unreachable + page_path(2))]
    assert gocdb.requests == []  # everything went through the proxy
    assert "retrying through proxy" in log_text(tmp_path)


def test_proxy_is_used_for_https_too(proxy, tmp_path):
    port = closed_port()
    before = existing_file(tmp_path, dns_of(3))
    config = write_config(tmp_path, f"https://127.0.0.1:{port}{QUERY}", proxy=proxy.url)
    line = assert_one_line_failure(run_apelauth(config), "through proxy", "keeping")
    assert "403" in line
    assert proxy.seen == [("CONNECT", f"127.0.0.1:{port}")]
    assert_kept(tmp_path, before)


def test_direct_success_does_not_touch_the_proxy(gocdb, proxy, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", dns_of(1)[0])]])
    assert run_apelauth(write_config(tmp_path, gocdb.url, proxy=proxy.url)).returncode == 0
    assert proxy.seen == []


# --------------------------------------------------------------------------- tests: configuration


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"max_shrink": "abc"}, "[auth] max_shrink: 'abc' is not a number; allowed: 0 to 1"),
        ({"max_shrink": "1.5"}, "[auth] max_shrink: '1.5' is out of range; allowed: 0 to 1"),
        ({"gocdb_url": "file:///etc/passwd"},
         "[auth] gocdb_url: 'file:///etc/passwd' is not a URL starting with http:// or https://"),
        ({"gocdb_url": ""}, "[auth] gocdb_url: '' is not a URL"),
        ({"proxy": "proxy.example.org:3128"}, "[auth] proxy: 'proxy.example.org:3128' is not a URL"),
        ({"timeout": "0"}, "[auth] timeout: '0' is out of range; allowed: 1 to 3600 seconds"),
        ({"timeout": "inf"}, "[auth] timeout: 'inf' is not a finite number; allowed: 1 to 3600 seconds"),
        ({"expire_hours": "-1"}, "[auth] expire_hours: '-1' is out of range; allowed: 0 to 87600 hours"),
        ({"max_pages": "0"}, "[auth] max_pages: '0' is out of range; allowed: 1 to 100000"),
        ({"deadline": "0"},
         "[auth] deadline: '0' is out of range; allowed: 1 to 86400 seconds for the whole run"),
    ],
)
def test_bad_option_is_one_line_and_exit_1(tmp_path, options, expected):
    config = write_config(tmp_path, "http://127.0.0.1:9/", **options)
    assert_one_line_failure(run_apelauth(config), expected)
    assert not dn_file(tmp_path).exists()


def test_missing_config_file_and_missing_section(tmp_path):
    assert_one_line_failure(run_apelauth(tmp_path / "none.cfg"), "config file not found")
    config = tmp_path / "auth.cfg"
    config.write_text(f"[logging]\nlogfile = {tmp_path / 'log'}\nconsole = false\n")
    assert_one_line_failure(run_apelauth(config), "[auth]: missing section")
    config.write_text("this is not an ini file\n")
    assert_one_line_failure(run_apelauth(config), "not a valid INI file")


def test_missing_output_directory_is_one_line(gocdb, tmp_path):
    gocdb.serve_pages([[endpoint(1, "a", dns_of(1)[0])]])
    config = write_config(tmp_path, gocdb.url, allowed_dns=tmp_path / "nodir" / "dns")
    assert_one_line_failure(run_apelauth(config), "[auth] allowed-dns: directory", "does not exist")
    assert gocdb.requests == []
