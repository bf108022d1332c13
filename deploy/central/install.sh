#!/usr/bin/env bash
# Installs the forecourt registry and its Mosquitto broker on a small central server (Debian bookworm),
# as root, again and again: each step looks first and changes only what differs (docs/raspberry-pi.md).
#
#   sudo deploy/central/install.sh [--postgresql] [--broker-host NAME]... [--bind ADDR] [--dry-run]
#   deploy/central/install.sh --no-system --no-venv --forecourt CMD --root DIR    # into DIR (tests)
#
# --broker-host  a name or address terminals reach the broker by, for its certificate (repeat; default
#                this machine's name, localhost and 127.0.0.1); only used when the authority is made
# --bind ADDR    the address the broker's TLS listener binds (default 0.0.0.0)
# --postgresql   PostgreSQL instead of SQLite: installs it, makes the role and database forecourt (peer
#                authentication over the local socket) and points the registry at it
# --source, --wheelhouse, --extras, --dry-run, --root, --no-system, --no-venv: as
# deploy/terminal/install.sh (no extras by default);
# --forecourt CMD: the forecourt command the steps run (default the venv's)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$HERE/../lib.sh"
SOURCE=$(cd "$HERE/../.." && pwd)
POSTGRESQL=0
BIND=0.0.0.0
HOSTS=()
PORT=8883

while [ $# -gt 0 ]; do
    rc=0
    common_option "$1" "${2:-}" || rc=$?
    case $rc in
        0) shift ;;
        1) shift 2 ;;
        *) case $1 in
               --postgresql) POSTGRESQL=1; shift ;;
               --bind) [ -n "${2:-}" ] || die "--bind needs an address"; BIND=$2; shift 2 ;;
               --broker-host) [ -n "${2:-}" ] || die "--broker-host needs a name"; HOSTS+=("$2"); shift 2 ;;
               -h | --help) usage "$0"; exit 0 ;;
               *) die "unknown option $1 (--help lists them)" ;;
           esac ;;
    esac
done
check_common
[ ${#HOSTS[@]} -gt 0 ] || HOSTS=("$(hostname -f 2>/dev/null || hostname)" localhost 127.0.0.1)
PKI=$STATE/pki
PG_URL="postgresql://$USER_NAME@/$USER_NAME?host=/run/postgresql"
SQLITE_URL="sqlite:///$STATE/registry.db"

# as the service's user, so that what the command writes is the service's (as is without the system steps)
as_user() {
    if [ "$SYSTEM" = 1 ]; then runuser -u "$USER_NAME" -- "$@"; else "$@"; fi
}

packages=(python3-venv python3-dev gcc libpcsclite-dev swig mosquitto fonts-dejavu-core)
[ "$POSTGRESQL" = 0 ] || packages+=(postgresql)
ensure_apt "${packages[@]}"
ensure_user "$HERE/forecourt.sysusers"
ensure_dir "$PREFIX" 0755 root:root
ensure_dir "$ETC" 0750 "root:$USER_NAME"
ensure_dir "$STATE" 0750 "$USER_NAME:$USER_NAME"
ensure_dir "$STATE/broker" 0700 "$USER_NAME:$USER_NAME"
ensure_file "$HERE/forecourt.tmpfiles" /etc/tmpfiles.d/forecourt.conf 0644 root:root
if [ "$POSTGRESQL" = 1 ]; then
    # psycopg: the registry's PostgreSQL driver (registry/db.py), not among the package's own dependencies
    ensure_package "$SOURCE${EXTRAS:+[$EXTRAS]}" "psycopg[binary]>=3.1"
else
    ensure_package "$SOURCE${EXTRAS:+[$EXTRAS]}"
fi

ensure_dir "$PKI" 0700 "$USER_NAME:$USER_NAME"
# the fleet's certificate authority: made once, never again (a second CA would lock every device out)
if [ -e "$ROOT$PKI/ca.key" ]; then
    ok "certificate authority $PKI"
else
    broker_hosts=()
    for host in "${HOSTS[@]}"; do broker_hosts+=(--broker-host "$host"); done
    change "certificate authority $PKI (broker names: ${HOSTS[*]})" as_user "$FORECOURT" registry pki init \
        --dir "$ROOT$PKI" "${broker_hosts[@]}"
fi

# the broker's config and ACL, from the project's own writer (registry/broker.py)
if [ "$DRY_RUN" = 1 ] && [ ! -e "$ROOT$PKI/ca.key" ]; then
    change "broker config $ETC/mosquitto.conf and ACL $PKI/broker.acl" "$FORECOURT" broker-config \
        --port "$PORT" --bind "$BIND" --tls-dir "$ROOT$PKI" --data-dir "$ROOT$STATE/broker" -o -
elif [ "$DRY_RUN" = 1 ]; then
    ok "broker config $ETC/mosquitto.conf is written again from the authority when it differs (not in --dry-run)"
else
    conf=$(as_user "$FORECOURT" broker-config --port "$PORT" --bind "$BIND" --tls-dir "$ROOT$PKI" \
        --data-dir "$ROOT$STATE/broker" -o -) || die "forecourt broker-config failed"
    ensure_text "$ETC/mosquitto.conf" 0640 "root:$USER_NAME" "$conf"
fi

# the registry's database URL and broker address (EnvironmentFile= of forecourt-registry.service)
env_text="FORECOURT_DB=$SQLITE_URL
FORECOURT_MQTT=localhost:$PORT
"
if [ ! -e "$ROOT$ETC/registry.env" ]; then
    [ "$POSTGRESQL" = 0 ] || env_text=${env_text/$SQLITE_URL/$PG_URL}
    ensure_text "$ETC/registry.env" 0640 "root:$USER_NAME" "$env_text"
elif [ "$POSTGRESQL" = 1 ] && ! grep -qxF "FORECOURT_DB=$PG_URL" "$ROOT$ETC/registry.env"; then
    change "registry database: PostgreSQL ($ETC/registry.env)" \
        sed -i "s|^FORECOURT_DB=.*|FORECOURT_DB=$PG_URL|" "$ROOT$ETC/registry.env"
else
    ok "file $ETC/registry.env ($(grep -m1 '^FORECOURT_DB=' "$ROOT$ETC/registry.env" | cut -d= -f2- | sed 's|//[^@/]*@|//USER@|'))"
    ensure_mode "$ETC/registry.env" 0640
    ensure_owner "$ETC/registry.env" "root:$USER_NAME"
fi

if [ "$POSTGRESQL" = 1 ] && [ "$SYSTEM" = 1 ]; then
    ensure_enabled postgresql.service
    systemctl is-active --quiet postgresql.service || change "start PostgreSQL" systemctl start postgresql.service
    psql_q() { runuser -u postgres -- psql -XtAc "$1" 2>/dev/null; }
    if [ "$(psql_q "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'")" = 1 ]; then
        ok "PostgreSQL role $USER_NAME"
    else
        change "PostgreSQL role $USER_NAME" runuser -u postgres -- createuser "$USER_NAME"
    fi
    if [ "$(psql_q "SELECT 1 FROM pg_database WHERE datname = '$USER_NAME'")" = 1 ]; then
        ok "PostgreSQL database $USER_NAME"
    else
        change "PostgreSQL database $USER_NAME (owner $USER_NAME)" \
            runuser -u postgres -- createdb --owner "$USER_NAME" "$USER_NAME"
    fi
fi

ensure_units "$HERE/forecourt-broker.service" "$HERE/forecourt-registry.service" \
    "$HERE/forecourt-broker-reload.service" "$HERE/forecourt-broker-reload.timer"
if [ "$SYSTEM" = 1 ]; then
    # one broker: Debian's own (1883, its own config) is not needed beside ours
    if systemctl_root is-enabled --quiet mosquitto.service 2>/dev/null; then
        change "disable Debian's mosquitto.service" systemctl ${ROOT:+--root="$ROOT"} disable --quiet mosquitto.service
    else
        ok "Debian's mosquitto.service is disabled"
    fi
    ensure_enabled forecourt-broker.service forecourt-registry.service forecourt-broker-reload.timer
    if [ -z "$ROOT" ]; then
        systemctl is-active --quiet mosquitto.service && change "stop Debian's mosquitto.service" \
            systemctl stop mosquitto.service
        for u in forecourt-broker.service forecourt-registry.service forecourt-broker-reload.timer; do
            if [ "$UNITS_CHANGED" = 1 ] && systemctl is-active --quiet "$u"; then
                change "restart $u (its unit changed)" systemctl restart "$u"
            elif systemctl is-active --quiet "$u"; then
                ok "running: $u"
            else
                change "start $u" systemctl start "$u"
            fi
        done
    fi
fi

finish
cat <<NEXT
terminals enroll with the claim identity: copy $PKI/ca.pem, claim.pem and claim.key to the technician's
provisioning medium; tokens: runuser -u $USER_NAME -- $PREFIX/bin/forecourt registry token create \\
    --db "\$(sed -n 's/^FORECOURT_DB=//p' $ETC/registry.env)" --station STATION
NEXT
