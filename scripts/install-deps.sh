#!/usr/bin/env bash
# Installs what the tests, the benchmarks and the quick start need on a Debian 12
# machine: ActiveMQ, MariaDB, slapd with the GLUE schemas, openssl, a JRE, and a
# virtualenv (.venv) holding the project and its test tools. Safe to run again:
# every step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server mariadb-client)
[ -f /usr/share/activemq/bin/activemq.jar ] || need_apt+=(activemq)
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || need_apt+=(ldap-utils)
[ -f /etc/ldap/schema/Glue-CORE.schema ] || need_apt+=(glue-schema)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v keytool >/dev/null 2>&1 || need_apt+=(default-jre-headless)
[ -x /usr/bin/time ] || need_apt+=(time)  # peak RSS of benchmarked processes
"${PYTHON:-python3}" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)

if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "install-deps: apt-get install ${need_apt[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat setup.py requirements-test.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e . -r requirements-test.txt
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# An editable install leaves the project's modules uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set every ssmsend run would compile them again (40 ms);
# a pip-installed package has its bytecode from the start.
.venv/bin/python -m compileall -q acctbase ssm apel bin >/dev/null
echo "install-deps: ready (.venv)"
