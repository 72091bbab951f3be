#!/bin/sh
# Installs and starts a Xene agent that joins the Xene server at
# __XENE_SERVER__ with a one-time join token.
#
#   curl -fsSL __XENE_SERVER__/install.sh | XENE_JOIN_TOKEN=TOKEN sh -s -- [options]
#
# The token is read from XENE_JOIN_TOKEN so that it shows in no process's
# arguments; the agent gets it through its environment (under systemd, from
# a file only root reads) and spends it at its first start.
#
# Options:
#   --join-token TOKEN   the token (prefer XENE_JOIN_TOKEN: arguments are public)
#   --name NAME          a name for the agent (default: this host's name)
#   --label KEY=VALUE    a label for the scheduler's selectors; repeatable
#   --capacity N         most tasks at once (default: the agent's)
#   --allow-shell        also run tasks without an image as plain processes
#   --prefix DIR         install into DIR/bin (default /usr/local as root, else ~/.local)
#   --state-dir DIR      where the agent keeps its credential and work
#   --no-start           install only
set -eu

SERVER='__XENE_SERVER__'
TOKEN="${XENE_JOIN_TOKEN:-}"
NAME=""
LABELS=""
CAPACITY=""
ALLOW_SHELL=""
PREFIX=""
STATE_DIR=""
START=1

fail() {
    echo "xene-agent install: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --join-token) [ $# -ge 2 ] || fail "--join-token needs a value"; TOKEN="$2"; shift 2 ;;
        --name) [ $# -ge 2 ] || fail "--name needs a value"; NAME="$2"; shift 2 ;;
        --label) [ $# -ge 2 ] || fail "--label needs a value"; LABELS="$LABELS${LABELS:+,}$2"; shift 2 ;;
        --capacity) [ $# -ge 2 ] || fail "--capacity needs a value"; CAPACITY="$2"; shift 2 ;;
        --allow-shell) ALLOW_SHELL=1; shift ;;
        --prefix) [ $# -ge 2 ] || fail "--prefix needs a value"; PREFIX="$2"; shift 2 ;;
        --state-dir) [ $# -ge 2 ] || fail "--state-dir needs a value"; STATE_DIR="$2"; shift 2 ;;
        --no-start) START=""; shift ;;
        *) fail "unknown option $1" ;;
    esac
done

[ -n "$TOKEN" ] || fail "a join token is required: XENE_JOIN_TOKEN=TOKEN sh"

if [ "$(id -u)" = 0 ]; then
    PREFIX="${PREFIX:-/usr/local}"
    STATE_DIR="${STATE_DIR:-/var/lib/xene-agent}"
else
    PREFIX="${PREFIX:-$HOME/.local}"
    STATE_DIR="${STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/xene-agent}"
fi
BIN="$PREFIX/bin"

# Retried: a server flooded by strangers closes some newcomers at once.
if command -v curl >/dev/null 2>&1; then
    fetch() { curl -fsSL --retry 3 --retry-connrefused "$1" -o "$2"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q --tries=3 "$1" -O "$2"; }
else
    fail "curl or wget is needed to download the agent"
fi

if command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
    fail "sha256sum or shasum is needed to check the download"
fi

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    if [ -z "$ALLOW_SHELL" ]; then
        fail "Docker is not available here (no docker command, or no permission to use it); install Docker, or pass --allow-shell to run only tasks without an image"
    fi
    echo "xene-agent install: Docker is not available; only tasks without an image will run here" >&2
fi

mkdir -p "$BIN" 2>/dev/null || fail "no permission to create $BIN (run as root, or pass --prefix)"
[ -w "$BIN" ] || fail "no permission to write to $BIN (run as root, or pass --prefix)"
mkdir -p "$STATE_DIR" 2>/dev/null || fail "no permission to create $STATE_DIR (pass --state-dir)"
chmod 700 "$STATE_DIR"

ARCH="$(uname -m)"
TMP="$(mktemp "${TMPDIR:-/tmp}/xene-agent.XXXXXX")"
trap 'rm -f "$TMP" "$TMP.sha256"' EXIT
fetch "$SERVER/download/xene-agent?arch=$ARCH" "$TMP" \
    || fail "cannot download the agent for $ARCH from $SERVER"
fetch "$SERVER/download/xene-agent.sha256?arch=$ARCH" "$TMP.sha256" \
    || fail "cannot download the agent's checksum from $SERVER"
EXPECTED="$(cut -d' ' -f1 "$TMP.sha256")"
ACTUAL="$(sha256 "$TMP")"
[ "$EXPECTED" = "$ACTUAL" ] || fail "the downloaded agent is damaged (sha256 $ACTUAL, expected $EXPECTED)"
chmod 755 "$TMP"
"$TMP" --version >/dev/null 2>&1 || fail "the downloaded agent does not run on this machine ($ARCH)"
mv "$TMP" "$BIN/xene-agent"
echo "xene-agent installed: $BIN/xene-agent"

[ -n "$START" ] || exit 0

set -- connect --server "$SERVER" --state-dir "$STATE_DIR"
[ -z "$NAME" ] || set -- "$@" --name "$NAME"
[ -z "$CAPACITY" ] || set -- "$@" --capacity "$CAPACITY"
[ -z "$ALLOW_SHELL" ] || set -- "$@" --allow-shell
OLD_IFS="$IFS"; IFS=','
for label in $LABELS; do set -- "$@" --label "$label"; done
IFS="$OLD_IFS"

# Quoted for a unit file: backslashes and quotes escaped, and systemd's own
# specifiers (% and $) doubled, so every argument reaches the agent as is.
systemd_escape() {
    printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' -e 's/\$/$$/g'
}

if [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    (umask 077; printf 'XENE_JOIN_TOKEN=%s\n' "$TOKEN" > "$STATE_DIR/agent.env")
    UNIT=/etc/systemd/system/xene-agent.service
    {
        echo "[Unit]"
        echo "Description=Xene agent"
        echo "After=network-online.target docker.service"
        echo "Wants=network-online.target"
        echo "[Service]"
        echo "EnvironmentFile=-$(systemd_escape "$STATE_DIR")/agent.env"
        printf 'ExecStart="%s/xene-agent"' "$(systemd_escape "$BIN")"
        for arg in "$@"; do printf ' "%s"' "$(systemd_escape "$arg")"; done
        echo
        echo "Restart=always"
        echo "RestartSec=2"
        # 2: a setting is wrong, 3: the credential was revoked; restarting cannot help.
        echo "RestartPreventExitStatus=2 3"
        echo "[Install]"
        echo "WantedBy=multi-user.target"
    } > "$UNIT"
    systemctl daemon-reload
    systemctl enable --now xene-agent.service
    echo "xene-agent started as the systemd service xene-agent (journalctl -u xene-agent)"
else
    LOG="$STATE_DIR/agent.log"
    XENE_JOIN_TOKEN="$TOKEN" nohup "$BIN/xene-agent" "$@" >>"$LOG" 2>&1 &
    echo $! > "$STATE_DIR/agent.pid"
    echo "xene-agent started in the background (pid $(cat "$STATE_DIR/agent.pid")); log: $LOG"
fi
