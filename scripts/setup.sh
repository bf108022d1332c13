#!/usr/bin/env bash
# Installs what forecourt needs on Debian/Ubuntu, idempotently: apt packages (with sudo when not root),
# a virtual environment in .venv, and the project in editable mode with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto pcscd vsmartcard-vpcd libpcsclite-dev swig python3-venv python3-dev gcc make postgresql
              espeak-ng alsa-utils    # spoken prompts (docs/accessibility.md): espeak-ng, aplay -D
              fonts-dejavu-core       # the screens' font: Latin, Cyrillic and Persian glyphs (ui/fonts.py)
              chromium chromium-driver    # the back office's browser tests (tests/web_browser.py)
              systemd shellcheck)     # the Pi's units and install scripts checked (tests/test_systemd_units.py,
                                      # tests/test_install_scripts.py)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.forecourt-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi

# --- MicroPython codec check (tests/test_dart_micropython.py) -------------------------------------------
# Node runs the DART codec vectors under the MicroPython WebAssembly port; the npm package is pinned in
# tests/micropython/package-lock.json. Installs nodejs/npm when missing, then `npm ci` only when
# node_modules is missing or package.json / package-lock.json changed since the last install.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing nodejs npm"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
mp_dir=tests/micropython
mp_stamp=$mp_dir/node_modules/.forecourt-stamp
mp_want=$(cat "$mp_dir/package.json" "$mp_dir/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ ! -f "$mp_stamp" ] || [ "$(cat "$mp_stamp")" != "$mp_want" ]; then
    echo "setup: npm ci in $mp_dir"
    (cd "$mp_dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$mp_want" > "$mp_stamp"
fi
