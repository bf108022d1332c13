# shellcheck shell=bash
# Steps shared by deploy/terminal/install.sh and deploy/central/install.sh. Each step looks first and acts
# only when something differs, then says which ("ok:" nothing to do, "changed:" done, "would:" --dry-run),
# so a second run changes nothing and says so.

# shellcheck disable=SC2034  # the settings below are read by the install scripts that source this file
ROOT=""            # --root DIR: install into DIR instead of / (a test, an image being built)
DRY_RUN=0          # --dry-run: say what would be done, do nothing
SYSTEM=1           # --no-system: no apt, no system user, no chown, no systemctl (a test as any user)
VENV=1             # --no-venv: no virtual environment and no pip (the package is installed already)
CHANGES=0
UNITS_CHANGED=0
PREFIX=/opt/forecourt
STATE=/var/lib/forecourt
ETC=/etc/forecourt
USER_NAME=forecourt
SOURCE=""          # --source: a checkout of this repository or a wheel built from it
WHEELHOUSE=""      # --wheelhouse DIR: install offline from DIR (pip download on a machine with a link)
FORECOURT=""       # --forecourt CMD: the forecourt command the later steps run (default: the venv's)
EXTRAS=""          # --extras LIST: the package's optional extras (pyproject.toml), comma-separated

usage() {    # the script's opening comment
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 2; }

ok() { printf 'ok: %s\n' "$*"; }

# change DESCRIPTION COMMAND...: run COMMAND (or only say it with --dry-run)
change() {
    local what=$1
    shift
    CHANGES=$((CHANGES + 1))
    if [ "$DRY_RUN" = 1 ]; then
        printf 'would: %s\n    $ %s\n' "$what" "$*"
    else
        "$@" || die "failed: $what"
        printf 'changed: %s\n' "$what"
    fi
}

common_option() {      # common_option NAME VALUE: 1 when NAME took VALUE, 0 when not, else not ours (2)
    case $1 in
        --dry-run) DRY_RUN=1; return 0 ;;
        --no-system) SYSTEM=0; return 0 ;;
        --no-venv) VENV=0; return 0 ;;
        --root) [ -n "${2:-}" ] || die "--root needs a directory"; ROOT=${2%/}; return 1 ;;
        --source) [ -n "${2:-}" ] || die "--source needs a path"; SOURCE=$2; return 1 ;;
        --wheelhouse) [ -n "${2:-}" ] || die "--wheelhouse needs a directory"; WHEELHOUSE=$2; return 1 ;;
        --forecourt) [ -n "${2:-}" ] || die "--forecourt needs a command"; FORECOURT=$2; return 1 ;;
        --extras) EXTRAS=${2:-}; return 1 ;;
    esac
    return 2
}

check_common() {
    if [ "$SYSTEM" = 1 ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root (or --no-system --root DIR to try it as another user)"
    fi
    [ -z "$ROOT" ] || [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
    [ -n "$FORECOURT" ] || FORECOURT=$ROOT$PREFIX/bin/forecourt
}

mode_of() { stat -c %a "$1"; }
owner_of() { stat -c %U:%G "$1"; }

# no_link PATH: refuse a symbolic link where we would chmod, chown or write as root: the forecourt user
# owns /var/lib/forecourt and could plant one there to turn this script against any file
no_link() {
    [ ! -L "$1" ] || die "refusing to touch $1: it is a symbolic link (someone planted it; remove it and run again)"
}

# owned USER:GROUP: install(1)'s options that make a new file or directory theirs (system steps only)
owned() {
    [ "$SYSTEM" = 1 ] || return 0
    printf '%s\n' -o "${1%%:*}" -g "${1#*:}"
}

# ensure_owner PATH USER:GROUP (an existing path under ROOT; only with the system steps)
ensure_owner() {
    no_link "$ROOT$1"
    [ "$SYSTEM" = 1 ] && [ -e "$ROOT$1" ] || return 0
    if [ "$(owner_of "$ROOT$1")" != "$2" ]; then
        change "owner of $1: $2" chown "$2" "$ROOT$1"
    fi
}

ensure_mode() {      # ensure_mode PATH MODE (a path --dry-run would have made is left alone)
    no_link "$ROOT$1"
    if [ ! -e "$ROOT$1" ] || [ "$(mode_of "$ROOT$1")" = "${2#0}" ]; then
        return 0
    fi
    change "mode of $1: $2" chmod "$2" "$ROOT$1"
}

# ensure_dir PATH MODE USER:GROUP
ensure_dir() {
    local before=$CHANGES
    no_link "$ROOT$1"
    if [ -d "$ROOT$1" ]; then
        ensure_mode "$1" "$2"
    else
        # shellcheck disable=SC2046  # owned prints whole words
        change "directory $1 ($2 $3)" install -d -m "$2" $(owned "$3") "$ROOT$1"
    fi
    ensure_owner "$1" "$3"
    [ "$CHANGES" != "$before" ] || ok "directory $1 ($2 $3)"
}

# ensure_file SRC DEST MODE USER:GROUP [keep]: ours is replaced when it differs; with "keep" (a file the
# technician edits) an existing one is left as it is
ensure_file() {
    local src=$1 dest=$2 mode=$3 owner=$4 keep=${5:-}
    no_link "$ROOT$dest"
    if [ ! -e "$ROOT$dest" ]; then
        # shellcheck disable=SC2046
        change "file $dest ($mode)" install -D -m "$mode" $(owned "$owner") "$src" "$ROOT$dest"
        case $dest in *.service | *.timer) UNITS_CHANGED=1 ;; esac
    elif ! cmp -s "$src" "$ROOT$dest"; then
        if [ "$keep" = keep ]; then
            ok "file $dest kept as edited here (the example: $src)"
        else
            change "file $dest (new content)" install -m "$mode" "$src" "$ROOT$dest"
            case $dest in *.service | *.timer) UNITS_CHANGED=1 ;; esac
        fi
    else
        ok "file $dest"
    fi
    ensure_mode "$dest" "$mode"
    ensure_owner "$dest" "$owner"
}

# ensure_text DEST MODE USER:GROUP TEXT: a file whose content this script decides
ensure_text() {
    local tmp
    tmp=$(mktemp)
    printf '%s' "$4" > "$tmp"
    ensure_file "$tmp" "$1" "$2" "$3"
    rm -f "$tmp"
}

ensure_apt() {        # ensure_apt PACKAGE...
    [ "$SYSTEM" = 1 ] || { ok "apt packages not looked at (--no-system)"; return 0; }
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        ok "apt packages: $*"
        return 0
    fi
    change "apt package list" apt-get update -qq
    change "apt packages: ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ensure_user SYSUSERS_FILE GROUP...: the system user from a sysusers.d snippet, in exactly these groups
ensure_user() {
    local conf=$1
    shift
    ensure_file "$conf" /etc/sysusers.d/forecourt.conf 0644 root:root
    [ "$SYSTEM" = 1 ] || { ok "system user not looked at (--no-system)"; return 0; }
    local have="" g short=0
    have=$(id -nG "$USER_NAME" 2>/dev/null) || short=1
    for g in "$@"; do
        case " $have " in *" $g "*) ;; *) short=1 ;; esac
    done
    if [ "$short" = 1 ]; then
        change "system user $USER_NAME (groups: $USER_NAME $*)" systemd-sysusers /etc/sysusers.d/forecourt.conf
    else
        ok "system user $USER_NAME (groups: $have)"
    fi
    for g in $have; do
        case " $USER_NAME $* " in
            *" $g "*) ;;
            *) printf 'warning: %s is also in group %s; remove it: gpasswd -d %s %s\n' \
                "$USER_NAME" "$g" "$USER_NAME" "$g" >&2 ;;
        esac
    done
}

source_digest() {     # what the package is installed from, as a digest (a wheel, or a checkout's files)
    if [ -f "$SOURCE" ]; then
        sha256sum < "$SOURCE" | cut -d' ' -f1
    elif git -C "$SOURCE" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$SOURCE" && git ls-files -z --cached --others --exclude-standard | sort -z \
            | xargs -0 sha256sum 2>/dev/null) | sha256sum | cut -d' ' -f1
    else
        (cd "$SOURCE" && find . -type f ! -path './.*' ! -path './build/*' -print0 | sort -z \
            | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
    fi
}

# ensure_package REQUIREMENT...: the venv under PREFIX with SOURCE[extras] and these requirements
ensure_package() {
    [ "$VENV" = 1 ] || { ok "virtual environment not looked at (--no-venv)"; return 0; }
    [ -e "$SOURCE" ] || die "--source $SOURCE does not exist"
    if [ -x "$ROOT$PREFIX/bin/python" ]; then
        ok "virtual environment $PREFIX"
    else
        change "virtual environment $PREFIX" python3 -m venv "$ROOT$PREFIX"
    fi
    local stamp="$ROOT$PREFIX/.forecourt-installed" want
    want="$(source_digest) $*"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        ok "package from $SOURCE ($*)"
        return 0
    fi
    local pip=("$ROOT$PREFIX/bin/pip" install --quiet --upgrade)
    [ -z "$WHEELHOUSE" ] || pip+=(--no-index --find-links "$WHEELHOUSE")
    change "package from $SOURCE into $PREFIX ($*)" "${pip[@]}" "$@"
    [ "$DRY_RUN" = 1 ] || printf '%s' "$want" > "$stamp"
}

ensure_units() {       # ensure_units UNIT_FILE...: into /etc/systemd/system, then daemon-reload if needed
    local f
    for f in "$@"; do
        ensure_file "$f" "/etc/systemd/system/${f##*/}" 0644 root:root
    done
    if [ "$SYSTEM" = 1 ] && [ "$UNITS_CHANGED" = 1 ] && [ -z "$ROOT" ]; then
        change "systemd reads the units again" systemctl daemon-reload
    fi
}

systemctl_root() {     # systemctl, on the files under ROOT when there is one
    if [ -n "$ROOT" ]; then systemctl --root="$ROOT" "$@"; else systemctl "$@"; fi
}

ensure_enabled() {     # ensure_enabled UNIT...
    [ "$SYSTEM" = 1 ] || { ok "units not enabled (--no-system): $*"; return 0; }
    local u
    for u in "$@"; do
        if systemctl_root is-enabled --quiet "$u" 2>/dev/null; then
            ok "enabled: $u"
        else
            if [ -n "$ROOT" ]; then
                change "enable $u" systemctl --root="$ROOT" enable --quiet "$u"
            else
                change "enable $u" systemctl enable --quiet "$u"
            fi
        fi
    done
}

finish() {
    if [ "$CHANGES" = 0 ]; then
        printf 'nothing changed: everything was installed already\n'
    elif [ "$DRY_RUN" = 1 ]; then
        printf '%d step(s) would change something (--dry-run: nothing done)\n' "$CHANGES"
    else
        printf '%d step(s) changed something\n' "$CHANGES"
    fi
}
