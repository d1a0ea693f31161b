"""Read every ``HOSTDN`` of the APEL service endpoints from the GOCDB public PI.

The PI answers ``get_service_endpoint`` with pages of

    <results>
      <meta><link rel="self" href="..."/><link rel="next" href="..."/></meta>
      <SERVICE_ENDPOINT PRIMARY_KEY="..."><HOSTNAME>..</HOSTNAME><HOSTDN>/C=../CN=..</HOSTDN>..
    </results>

and the last page has no ``next`` link. The answer comes from the network and decides
who may publish accounting data, so reading it is deliberately strict:

* the XML is parsed with defusedxml (no DTD, no entities), so a hostile or broken
  server cannot expand entities or pull in external files;
* every page has a size limit and a time limit, and the number of pages is bounded;
  a ``next`` link seen before (a loop) or one to a non-HTTP URL is a failure;
* any failure on any page fails the whole fetch: a list missing some pages must not
  be mistaken for a complete one (``FetchError.partial`` keeps what arrived).

The ``proxy`` option keeps its ``retrieve_dns`` meaning: when the direct request
cannot connect, the request is retried through the proxy, and the following pages
go through it too. Unlike ``retrieve_dns`` the proxy is used for https as well.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Optional
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from apel import __version__
from apel.auth.exceptions import FetchError

log = logging.getLogger(__name__)

DEFAULT_GOCDB_URL = (
    "https://goc.egi.eu/gocdbpi/public/?method=get_service_endpoint&service_type=gLite-APEL"
)
DEFAULT_TIMEOUT = 120.0
DEFAULT_DEADLINE = 300.0  # seconds for the whole fetch, every page included
DEFAULT_MAX_PAGES = 100
DEFAULT_MAX_PAGE_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024
_SCHEMES = ("http", "https")


@dataclass
class GocdbResult:
    """What a complete fetch found: DNs in page order (duplicates kept) and counts to log."""

    dns: list[str] = field(default_factory=list)
    pages: int = 0
    endpoints: int = 0
    endpoints_without_dn: int = 0
    via_proxy: bool = False
    # Taken to add a page and to read what has arrived, which another thread may do.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_page(self, number: int, page: Page) -> None:
        with self.lock:
            self.pages = number
            self.dns.extend(page.dns)
            self.endpoints += page.endpoints
            self.endpoints_without_dn += page.endpoints_without_dn

    def so_far(self) -> tuple[list[str], int]:
        """The DNs of the pages complete so far, and how many pages that is."""
        with self.lock:
            return list(self.dns), self.pages


@dataclass
class Page:
    """One parsed PI page."""

    dns: list[str]
    next_url: Optional[str]
    endpoints: int
    endpoints_without_dn: int


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s), never to ftp: or other schemes urllib knows."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> Optional[urllib.request.Request]:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in _SCHEMES:
            raise urllib.error.HTTPError(newurl, code, f"redirect to a non-HTTP URL {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL; ValueError otherwise (file: etc. are refused)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in _SCHEMES or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url


def build_opener(proxy: Optional[str]) -> urllib.request.OpenerDirector:
    """An opener that goes direct (``proxy`` None) or through ``proxy`` for http AND https.

    The direct opener keeps urllib's default handling of the ``*_proxy`` environment
    variables, as ``retrieve_dns`` did; the proxy opener ignores them.
    """
    handlers: list[urllib.request.BaseHandler] = [_HttpOnlyRedirects()]
    if proxy:
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers)


def parse_page(data: bytes) -> Page:
    """Parse one PI page; ValueError names what is wrong (bad XML, DTD or entities, no <results>)."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ValueError(f"refused unsafe XML ({type(exc).__name__})") from None
    except ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    if root.tag != "results":
        raise ValueError(f"unexpected XML document <{root.tag}>, expected <results>")
    error = root.find("error")
    if error is not None:
        raise ValueError(f"GOCDB reported an error: {_text(error) or 'no message'}")

    # As in retrieve_dns, every HOSTDN in the document counts, in document order.
    dns = [dn for dn in (_text(hostdn) for hostdn in root.iter("HOSTDN")) if dn]
    endpoints = without_dn = 0
    for endpoint in root.iter("SERVICE_ENDPOINT"):
        endpoints += 1
        if not any(_text(hostdn) for hostdn in endpoint.iter("HOSTDN")):
            without_dn += 1
            log.debug(
                "GOCDB endpoint %s (%s) has no HOSTDN",
                endpoint.get("PRIMARY_KEY", "?"), _text(endpoint.find("HOSTNAME")) or "no hostname",
            )
    return Page(dns=dns, next_url=_next_link(root), endpoints=endpoints, endpoints_without_dn=without_dn)


def _text(element: Optional[Element]) -> str:
    if element is None:
        return ""
    return "".join(element.itertext()).strip()


def _next_link(root: Element) -> Optional[str]:
    for link in root.iter("link"):
        if link.get("rel", "").strip().lower() == "next":
            href = link.get("href", "").strip()
            return href or None
    return None


def fetch_within(deadline: float, url: str, **options: Any) -> GocdbResult:
    """``fetch_hostdns`` given at most ``deadline`` seconds in all; FetchError after that.

    Each read has its ``timeout``, but a server that sends its headers one byte a
    second answers every read in time, and apelauth hung for as long as it went on.
    The fetch runs in a daemon thread that is left behind at the deadline: it only
    reads the network and builds a result, and the process exits after the run.
    """
    progress = GocdbResult()
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["result"] = fetch_hostdns(url, progress=progress, **options)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=fetch, name="gocdb-fetch", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        dns, pages = progress.so_far()
        raise FetchError(f"GOCDB not read within deadline = {deadline:g} s ({pages} page(s) complete)",
                         dns, pages)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def fetch_hostdns(
    url: str,
    proxy: Optional[str] = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
    progress: Optional[GocdbResult] = None,
) -> GocdbResult:
    """Fetch all pages from ``url`` on and return every HOSTDN; FetchError if any page fails.

    ``progress``, when given, is the result filled page by page (read by ``fetch_within``).
    """
    result = progress if progress is not None else GocdbResult()

    def failed(problem: str) -> FetchError:
        return FetchError(problem, result.dns, result.pages)

    seen: set[str] = set()
    opener = build_opener(None)
    current = check_url(url)
    while True:
        number = result.pages + 1
        if current in seen:
            raise failed(f"GOCDB paging loop: page {number} would be {current} again")
        if number > max_pages:
            raise failed(f"GOCDB has more than max_pages = {max_pages} pages (next: {current})")
        seen.add(current)
        where = f"GOCDB page {number} ({current})"
        try:
            data = _get(opener, current, timeout, max_page_bytes)
        except _PageFailed as exc:
            raise failed(f"{where}: {exc}") from None
        except _CannotConnect as exc:
            if not proxy or result.via_proxy:
                raise failed(f"{where}: {exc}") from None
            log.info("Cannot reach %s directly (%s); retrying through proxy %s", current, exc, proxy)
            opener = build_opener(proxy)
            result.via_proxy = True
            try:
                data = _get(opener, current, timeout, max_page_bytes)
            except (_CannotConnect, _PageFailed) as exc2:
                raise failed(f"{where} through proxy {proxy}: {exc2}") from None
        try:
            page = parse_page(data)
        except ValueError as exc:
            raise failed(f"{where}: {exc}") from None
        result.add_page(number, page)
        log.debug("GOCDB page %d: %d endpoints, %d DNs", number, page.endpoints, len(page.dns))
        if page.next_url is None:
            break
        target = urllib.parse.urljoin(current, page.next_url)  # relative links are allowed
        try:
            current = check_url(target)
        except ValueError:
            raise failed(f"GOCDB page {number} has a next link to a non-HTTP URL: {target}") from None
    return result


class _CannotConnect(Exception):
    """No connection to the server: the case where retrieve_dns retried through the proxy."""


class _PageFailed(Exception):
    """The server answered, but not with a usable page (status, size, time)."""


def _get(opener: urllib.request.OpenerDirector, url: str, timeout: float, max_bytes: int) -> bytes:
    # check_url() has limited url to http(s) before it gets here.
    request = urllib.request.Request(  # noqa: S310
        url, headers={"User-Agent": f"apelauth/{__version__}", "Accept": "application/xml, text/xml"}
    )
    deadline = time.monotonic() + timeout
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _PageFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _CannotConnect(f"timed out after {timeout:g} s") from None
        raise _CannotConnect(str(reason)) from None
    except (socket.timeout, TimeoutError):
        raise _PageFailed(f"no answer within {timeout:g} s") from None
    except OSError as exc:
        raise _CannotConnect(str(exc) or type(exc).__name__) from None
    except http.client.HTTPException as exc:  # e.g. not an HTTP server on that port
        raise _PageFailed(f"bad HTTP answer: {type(exc).__name__}: {exc}") from None
    with response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise _PageFailed(f"response of {int(length)} bytes is over max_page_bytes = {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                # read1 returns after one receive, so a server trickling bytes
                # still meets the deadline check below.
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise _PageFailed(f"response is over max_page_bytes = {max_bytes}")
                if time.monotonic() > deadline:
                    raise _PageFailed(f"page not complete within timeout = {timeout:g} s")
                chunks.append(chunk)
        except (socket.timeout, TimeoutError):
            raise _PageFailed(f"read timed out after {timeout:g} s") from None
        except OSError as exc:
            raise _PageFailed(f"read failed: {exc}") from None
        except http.client.HTTPException as exc:  # e.g. a truncated chunked body
            raise _PageFailed(f"read failed: {type(exc).__name__}: {exc}") from None
    return b"".join(chunks)
