"""Real ActiveMQ, MariaDB and slapd run as ordinary processes on 127.0.0.1.

Used by the test suite, the benchmarks and the quick start. Each service gets free
ports, keeps all its data under a private directory, is waited for until it
answers, and is stopped by its own PID. Nothing here touches the system's own
instances or ports. ActiveMQ runs directly from its launcher jar (not through the
distribution's init script and its instance directories), mariadbd with ``--no-defaults``
(no /etc/mysql configuration leaks in), slapd from an old-style config file (no
cn=config to build); see "Test services" in docs/design.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from apel.testkit.pki import Identity, TestPKI

ACTIVEMQ_HOME = "/usr/share/activemq"
LDAP_SCHEMAS = (
    "core", "cosine", "Glue-CORE", "Glue-MDS", "Glue-CE", "Glue-CESEBind", "Glue-SE", "GLUE20",
)


class ServiceError(RuntimeError):
    """A test service could not be started; the message says where its log is."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str, log: str, proc: Optional[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode}; see {log}")
        time.sleep(0.1)
    raise ServiceError(f"{what} did not become ready in {timeout:.0f} s; see {log}")


def _stop_pid(pid: Optional[int], timeout: float = 15.0) -> None:
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it if it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _spawn(argv: list[str], log: str, env: Optional[dict] = None) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
    finally:
        handle.close()


# -- ActiveMQ ------------------------------------------------------------------------


@dataclass
class ActiveMQ:
    """An ActiveMQ broker with STOMP on plain TCP and on TLS requiring client certs."""

    base: str
    pki: TestPKI
    stomp_port: int = 0
    ssl_port: int = 0
    proc: Optional[subprocess.Popen] = None
    identity: Optional[Identity] = None
    max_frame_size: int = 10 * 1024 * 1024  # the largest STOMP frame the broker takes

    @property
    def log(self) -> str:
        return os.path.join(self.base, "activemq.log")

    def start(self, timeout: float = 90.0) -> ActiveMQ:
        conf = os.path.join(self.base, "conf")
        data = os.path.join(self.base, "data")
        tmp = os.path.join(self.base, "tmp")
        for directory in (conf, data, tmp):
            os.makedirs(directory, exist_ok=True)
        self.identity = self.identity or self.pki.host("broker", cn="localhost")
        keystore, truststore = self.pki.java_stores(self.identity)
        self.stomp_port = self.stomp_port or free_port()
        self.ssl_port = self.ssl_port or free_port()
        openwire = free_port()
        with open(os.path.join(conf, "activemq.xml"), "w", encoding="utf-8") as handle:
            handle.write(_ACTIVEMQ_XML.format(
                keystore=keystore, truststore=truststore, openwire=openwire,
                stomp=self.stomp_port, ssl=self.ssl_port, frame=self.max_frame_size,
            ))
        with open(os.path.join(conf, "log4j.properties"), "w", encoding="utf-8") as handle:
            handle.write(_LOG4J)
        argv = [
            "java", "-Xms64M", "-Xmx512M",
            f"-Dactivemq.home={ACTIVEMQ_HOME}", f"-Dactivemq.base={self.base}",
            f"-Dactivemq.conf={conf}", f"-Dactivemq.data={data}", f"-Djava.io.tmpdir={tmp}",
            f"-Dlog4j.configuration=file:{conf}/log4j.properties",
            "-jar", f"{ACTIVEMQ_HOME}/bin/activemq.jar", "start",
            f"xbean:file:{conf}/activemq.xml",
        ]
        self.proc = _spawn(argv, self.log)
        _wait(self._started, timeout, "ActiveMQ", self.log, self.proc)
        return self

    def _started(self) -> bool:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                started = "started" in handle.read() and port_open(self.stomp_port)
        except OSError:
            return False
        return started and port_open(self.ssl_port)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc.pid, timeout=30)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


_ACTIVEMQ_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>
  <broker xmlns="http://activemq.apache.org/schema/core" useJmx="false" brokerName="testbroker"
          dataDirectory="${{activemq.data}}" schedulerSupport="false">
    <persistenceAdapter><kahaDB directory="${{activemq.data}}/kahadb"/></persistenceAdapter>
    <systemUsage><systemUsage>
      <storeUsage><storeUsage limit="4 gb"/></storeUsage>
      <tempUsage><tempUsage limit="1 gb"/></tempUsage>
    </systemUsage></systemUsage>
    <sslContext>
      <sslContext keyStore="file:{keystore}" keyStorePassword="changeit" keyStoreType="PKCS12"
                  trustStore="file:{truststore}" trustStorePassword="changeit" trustStoreType="PKCS12"/>
    </sslContext>
    <transportConnectors>
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{openwire}"/>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{stomp}?transport.maxFrameSize={frame}"/>
      <transportConnector name="stomp+ssl"
          uri="stomp+ssl://127.0.0.1:{ssl}?needClientAuth=true&amp;transport.maxFrameSize={frame}"/>
    </transportConnectors>
  </broker>
</beans>
"""

_LOG4J = """log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{HH:mm:ss,SSS} %-5p %c{1} - %m%n
"""


# -- MariaDB -------------------------------------------------------------------------

STRICT_SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO"
)


@dataclass
class MariaDB:
    """A MariaDB server with a root socket and an ``apel`` user over TCP."""

    base: str
    port: int = 0
    user: str = "apel"
    password: str = "apelpw"  # noqa: S105 - throwaway test server on loopback
    proc: Optional[subprocess.Popen] = None

    @property
    def socket(self) -> str:
        return os.path.join(self.base, "mysqld.sock")

    @property
    def log(self) -> str:
        return os.path.join(self.base, "error.log")

    def start(self, timeout: float = 60.0) -> MariaDB:
        datadir = os.path.join(self.base, "data")
        if not os.path.isdir(os.path.join(datadir, "mysql")):
            os.makedirs(datadir, exist_ok=True)
            subprocess.run(
                ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                 "--skip-test-db", "--auth-root-authentication-method=socket"],
                check=True, capture_output=True,
            )
        self.port = self.port or free_port()
        argv = [
            _mariadbd(), "--no-defaults", "--user=root", f"--datadir={datadir}",
            f"--socket={self.socket}", f"--pid-file={self.base}/mysqld.pid",
            "--bind-address=127.0.0.1", f"--port={self.port}", f"--log-error={self.log}",
            "--skip-name-resolve", f"--sql-mode={STRICT_SQL_MODE}",
            "--innodb-buffer-pool-size=256M", "--max-allowed-packet=64M",
            "--innodb-log-file-size=256M", "--local-infile=1",
        ]
        self.proc = _spawn(argv, os.path.join(self.base, "mysqld.out"))
        _wait(self._ready, timeout, "MariaDB", self.log, self.proc)
        self.root_sql(
            f"CREATE USER IF NOT EXISTS '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'localhost' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL ON *.* TO '{self.user}'@'127.0.0.1';"
            f"GRANT ALL ON *.* TO '{self.user}'@'localhost';"
        )
        return self

    def _ready(self) -> bool:
        return subprocess.run(
            ["mariadb-admin", f"--socket={self.socket}", "-uroot", "ping"],
            capture_output=True, check=False,
        ).returncode == 0

    def root_sql(self, sql: str) -> str:
        out = subprocess.run(
            ["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-e", sql],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise ServiceError(f"MariaDB: {out.stderr.strip()}")
        return out.stdout

    def create_database(self, name: str) -> str:
        self.root_sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`;")
        return name

    def connect_args(self, database: str) -> dict:
        return {
            "host": "127.0.0.1", "port": self.port, "user": self.user,
            "password": self.password, "database": database,
        }

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc.pid, timeout=30)
            self.proc = None


def _mariadbd() -> str:
    for candidate in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld"):
        if os.path.exists(candidate):
            return candidate
    return "mariadbd"


# -- slapd ---------------------------------------------------------------------------


@dataclass
class Slapd:
    """OpenLDAP with an ``o=grid`` (GLUE 1.3) and an ``o=glue`` (GLUE 2) database."""

    base: str
    port: int = 0
    proc: Optional[subprocess.Popen] = None
    admin_password: str = "secret"  # noqa: S105 - throwaway test server on loopback

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def config(self) -> str:
        return os.path.join(self.base, "slapd.conf")

    def start(self, ldif: Optional[dict[str, str]] = None, timeout: float = 30.0) -> Slapd:
        """Start, after loading ``ldif`` ({suffix: ldif text}) offline with slapadd."""
        run = os.path.join(self.base, "run")
        for directory in (run, os.path.join(self.base, "db-grid"), os.path.join(self.base, "db-glue")):
            os.makedirs(directory, exist_ok=True)
        lines = [f"include /etc/ldap/schema/{name}.schema" for name in LDAP_SCHEMAS]
        lines += [
            f"pidfile {run}/slapd.pid", f"argsfile {run}/slapd.args",
            "modulepath /usr/lib/ldap", "moduleload back_mdb", "loglevel none", "allow bind_v2",
        ]
        for suffix, directory in (("o=grid", "db-grid"), ("o=glue", "db-glue")):
            lines += [
                "database mdb", f'suffix "{suffix}"', f'rootdn "cn=admin,{suffix}"',
                f"rootpw {self.admin_password}", f"directory {self.base}/{directory}",
                "maxsize 104857600", "access to * by * read",
            ]
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        for suffix, text in (ldif or {}).items():
            path = os.path.join(self.base, f"{suffix.replace('=', '_')}.ldif")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            out = subprocess.run(
                ["slapadd", "-f", self.config, "-b", suffix, "-l", path],
                capture_output=True, text=True, check=False,
            )
            if out.returncode != 0:
                raise ServiceError(f"slapadd {suffix}: {out.stderr.strip()}")
        self.port = self.port or free_port()
        log = os.path.join(self.base, "slapd.log")
        self.proc = _spawn(
            ["/usr/sbin/slapd", "-f", self.config, "-h", f"{self.url}/", "-d", "0"], log
        )
        _wait(lambda: port_open(self.port), timeout, "slapd", log, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc.pid)
            self.proc = None
