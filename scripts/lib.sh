# Shared helpers for the developer scripts in scripts/ (sourced, never run).
#
# Every script prints progress on stderr as "[rexec <script>] ..." so that a
# newcomer can tell which step is running and which step failed; stdout is
# kept for results a caller may want to capture.
# shellcheck shell=bash

REXEC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Daemons started by scripts/setup keep their pid files, logs, config and data
# here. /var/lib rather than /tmp: the local registry's blobs must survive a
# reboot or a tmp cleaner, or pinned digests stop resolving.
REXEC_STATE_DIR="${REXEC_STATE_DIR:-/var/lib/rexec-dev}"
REXEC_BASE_IMAGE="${REXEC_BASE_IMAGE:-rexec/base:bookworm}"
REXEC_REGISTRY_ADDR="${REXEC_REGISTRY_ADDR:-127.0.0.1:5000}"
export DEBIAN_FRONTEND=noninteractive

_rexec_script="$(basename "$0")"

log() { printf '[rexec %s] %s\n' "$_rexec_script" "$*" >&2; }

die() {
    printf '[rexec %s] error: %s\n' "$_rexec_script" "$1" >&2
    if [[ $# -ge 2 ]]; then printf '[rexec %s]   hint: %s\n' "$_rexec_script" "$2" >&2; fi
    exit 1
}

# Seconds since the epoch with a fraction, for the timings the scripts print.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

need_root() {
    [[ "$(id -u)" -eq 0 ]] || die "$1 needs root (it installs packages and starts daemons)" \
        "run it as root, e.g. sudo bash scripts/$_rexec_script"
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.25 s.
wait_until() {
    local timeout="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then return 1; fi
        sleep 0.25
    done
    log "$what is up"
}

# pid_alive PIDFILE: the process named in PIDFILE is still running. A zombie (a
# daemon that was killed, whose parent is a PID 1 that does not reap) is not.
pid_alive() {
    [[ -s "$1" ]] || return 1
    local pid
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]]
}
