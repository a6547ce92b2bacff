#!/usr/bin/env bash
# Installs what the test suite needs and the machine lacks (Debian packages, as root):
# PostgreSQL server binaries, PostGIS (GeoJSON output is tested), Chromium (the docs page is checked headless), curl (README's examples) and Python's
# venv module (the OpenAPI validator and schemathesis are pip-installed by the tests
# themselves, into target/tmp/pytools).
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
  # The PostGIS build for the server version found (15 on Debian bookworm).
  version="$(ls -d /usr/lib/postgresql/*/ 2>/dev/null | sort -V | tail -1 | xargs -r basename)"
  missing+=("postgresql-${version:-15}-postgis-3")
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  missing+=(chromium)
fi
if ! command -v curl >/dev/null 2>&1; then
  # README's examples are run with curl, as a reader runs them (tests/readme_examples.rs).
  missing+=(curl)
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  echo "test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
