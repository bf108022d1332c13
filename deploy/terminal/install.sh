#!/usr/bin/env bash
# Installs the forecourt terminal on a Raspberry Pi (Raspberry Pi OS bookworm, arm64), as root, again and
# again: each step looks first and changes only what differs (docs/raspberry-pi.md).
#
#   sudo deploy/terminal/install.sh [--source PATH|WHEEL] [--wheelhouse DIR] [--dry-run]
#   deploy/terminal/install.sh --no-system --no-venv --root DIR     # into DIR, as any user (tests)
#
# --source      this repository (the default: the checkout the script is in) or a wheel built from it
# --wheelhouse  install offline from a directory of wheels (pip download '.[pi]' -d DIR elsewhere)
# --extras      the package's extras to install (default pi: the GPIO library; "" for none)
# --dry-run     print each step that would change something, and its command; change nothing
# --root DIR    install under DIR instead of /
# --no-system   no apt, no system user, no chown, no systemctl
# --no-venv     no virtual environment and no pip
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$HERE/../lib.sh"
SOURCE=$(cd "$HERE/../.." && pwd)
EXTRAS=pi

while [ $# -gt 0 ]; do
    rc=0
    common_option "$1" "${2:-}" || rc=$?
    case $rc in
        0) shift ;;
        1) shift 2 ;;
        *) case $1 in
               -h | --help) usage "$0"; exit 0 ;;
               *) die "unknown option $1 (--help lists them)" ;;
           esac ;;
    esac
done
check_common

# pcscd + libccid: the card readers; libpcsclite-dev swig gcc python3-dev: pyscard where no wheel fits;
# espeak-ng alsa-utils: spoken prompts; fonts-dejavu-core: the screens' font
ensure_apt python3-venv python3-dev gcc pcscd libccid libpcsclite1 libpcsclite-dev swig \
    espeak-ng alsa-utils fonts-dejavu-core
ensure_user "$HERE/forecourt.sysusers" dialout gpio spi lp
ensure_dir "$PREFIX" 0755 root:root
ensure_dir "$ETC" 0750 "root:$USER_NAME"
ensure_dir "$STATE" 0750 "$USER_NAME:$USER_NAME"
ensure_file "$HERE/forecourt.tmpfiles" /etc/tmpfiles.d/forecourt.conf 0644 root:root
before=$CHANGES
ensure_file "$HERE/watchdog.conf" /etc/systemd/system.conf.d/forecourt-watchdog.conf 0644 root:root
[ "$CHANGES" = "$before" ] || echo "note: the hardware watchdog is fed from the next boot on"
ensure_package "$SOURCE${EXTRAS:+[$EXTRAS]}"

ensure_file "$HERE/terminal.toml.example" "$ETC/terminal.toml" 0640 "root:$USER_NAME" keep
ensure_file "$HERE/terminal.env.example" "$ETC/terminal.env" 0640 "root:$USER_NAME" keep
# the prepared configuration provisioning completes (never over one already there)
if [ -e "$ROOT$STATE/terminal.toml" ]; then
    ok "file $STATE/terminal.toml (the terminal's own; provisioning and rotate-cert rewrite it)"
    ensure_mode "$STATE/terminal.toml" 0600
    ensure_owner "$STATE/terminal.toml" "$USER_NAME:$USER_NAME"
else
    ensure_file "$ROOT$ETC/terminal.toml" "$STATE/terminal.toml" 0600 "$USER_NAME:$USER_NAME"
fi

ensure_units "$HERE/forecourt-terminal.service"
ensure_enabled pcscd.socket forecourt-terminal.service

finish
if [ ! -e "$ROOT$STATE/config-keys.json" ]; then
    cat <<NEXT
next: edit $ETC/terminal.toml (copy your changes to $STATE/terminal.toml), then provision as $USER_NAME:
  runuser -u $USER_NAME -- $PREFIX/bin/forecourt provision init --state-dir $STATE \\
      --broker BROKER:8883 --serial SERIAL --claim-dir CLAIM_DIR --token -
  systemctl start forecourt-terminal.service
NEXT
fi
