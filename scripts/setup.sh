#!/usr/bin/env bash
# Installs what the tests and benchmarks need on a fresh Debian machine: fuse3 and the tools the
# mount tests drive (vim, perl, python3, getfattr, setfacl), and a Python virtualenv with moto and the
# Prometheus text parser in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the mount tests use: fusermount3, and the tools they drive (vim, perl, python3,
# getfattr, setfacl).
missing=""
for tool in fusermount3:fuse3 vim:vim perl:perl python3:python3 getfattr:attr setfacl:acl; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
if [ -n "$missing" ]; then
    echo "== installing$missing"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/moto_server ]; then
    echo "== creating .venv with moto[server]"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
if ! .venv/bin/python -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "== adding the Prometheus text parser to .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check 'prometheus-client>=0.20,<1'
fi
if ! .venv/bin/python -c 'import dotenv, jproperties, yaml' >/dev/null 2>&1; then
    echo "== adding python-dotenv, jproperties and PyYAML to .venv (view format round trips)"
    .venv/bin/pip install --quiet --disable-pip-version-check 'python-dotenv>=1,<2' 'jproperties>=2,<3' 'PyYAML>=6,<7'
fi
