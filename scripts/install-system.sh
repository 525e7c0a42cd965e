#!/usr/bin/env bash
# Installs the system packages reelscore needs (Debian 12) and builds pgvector and
# TimescaleDB (Apache edition) for PostgreSQL 15 from Debian 13 source packages.
# Idempotent: every step checks first and is skipped when already done.
set -euo pipefail

PGVECTOR_VERSION="${PGVECTOR_VERSION:-0.8.0}"
TIMESCALEDB_VERSION_PREFIX="${TIMESCALEDB_VERSION_PREFIX:-2.19}"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
BUILD_DIR="${REELSCORE_BUILD_DIR:-/var/cache/reelscore-build}"

say() { echo "[install-system] $*"; }
die() { echo "[install-system] error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get and make install need it), or install the packages yourself"

APT_PACKAGES=(postgresql-15 postgresql-contrib postgresql-plpython3-15 postgresql-15-cron
              postgresql-server-dev-15 build-essential cmake dpkg-dev libssl-dev libkrb5-dev
              chromium chromium-driver nodejs npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (nodesource); accept any working binary.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]:-}"
apt_updated=0
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  apt-get update -qq || die "apt-get update failed: is the Debian mirror reachable?"
  apt_updated=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

ext_installed() { [ -f "$($PG_CONFIG --sharedir)/extension/$1.control" ]; }
ext_version() { sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$($PG_CONFIG --sharedir)/extension/$1.control"; }

need_source=0
if ! ext_installed vector || [ "$(ext_version vector)" != "$PGVECTOR_VERSION" ]; then need_source=1; fi
if ! ext_installed timescaledb || [[ "$(ext_version timescaledb)" != ${TIMESCALEDB_VERSION_PREFIX}* ]]; then need_source=1; fi

if [ "$need_source" = 1 ]; then
  if [ ! -f /etc/apt/sources.list.d/reelscore-trixie-src.sources ]; then
    say "adding deb-src for Debian 13 (trixie): source packages only, nothing binary comes from trixie"
    cat >/etc/apt/sources.list.d/reelscore-trixie-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_updated=0
  fi
  [ "$apt_updated" = 1 ] || apt-get update -qq || die "apt-get update failed after adding trixie deb-src"
  mkdir -p "$BUILD_DIR"
fi

if ! ext_installed vector || [ "$(ext_version vector)" != "$PGVECTOR_VERSION" ]; then
  say "building pgvector $PGVECTOR_VERSION from Debian source package"
  cd "$BUILD_DIR"
  [ -d "pgvector-$PGVECTOR_VERSION" ] || apt-get source -qq "pgvector=$PGVECTOR_VERSION-*" >/dev/null 2>&1 \
    || apt-get source -qq pgvector >/dev/null || die "apt-get source pgvector failed"
  src=$(ls -d pgvector-"$PGVECTOR_VERSION"* 2>/dev/null | head -1)
  [ -n "$src" ] || die "pgvector source $PGVECTOR_VERSION not found in $BUILD_DIR (trixie carries: $(ls -d pgvector-* | tr '\n' ' '))"
  make -s -C "$src" PG_CONFIG=$PG_CONFIG OPTFLAGS="" >/dev/null
  make -s -C "$src" PG_CONFIG=$PG_CONFIG install >/dev/null
fi

if ! ext_installed timescaledb || [[ "$(ext_version timescaledb)" != ${TIMESCALEDB_VERSION_PREFIX}* ]]; then
  say "building TimescaleDB ${TIMESCALEDB_VERSION_PREFIX} (Apache-only) from Debian source package"
  cd "$BUILD_DIR"
  ls -d timescaledb-"$TIMESCALEDB_VERSION_PREFIX"* >/dev/null 2>&1 || apt-get source -qq timescaledb >/dev/null \
    || die "apt-get source timescaledb failed"
  src=$(ls -d timescaledb-"$TIMESCALEDB_VERSION_PREFIX"* 2>/dev/null | grep -v '\.tar' | head -1)
  [ -n "$src" ] || die "TimescaleDB ${TIMESCALEDB_VERSION_PREFIX} source not found (trixie carries: $(ls -d timescaledb-* | tr '\n' ' '))"
  cd "$src"
  cmake -S . -B build -DPG_CONFIG=$PG_CONFIG -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=NO -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" >/dev/null
  cmake --install build >/dev/null
fi

say "ok: PostgreSQL $($PG_CONFIG --version | awk '{print $2}'), pgvector $(ext_version vector), timescaledb $(ext_version timescaledb), pg_cron, plpython3u"
