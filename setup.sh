#!/usr/bin/env bash
# Installs what the suite needs into .venv (idempotent): bash setup.sh [--dev]
#   --dev  also the test tools (pytest)
# PostgreSQL server binaries come from the pgserver package when the machine has none.
set -euo pipefail
cd "$(dirname "$0")"
requirements=requirements.txt
[[ "${1:-}" == "--dev" ]] && requirements=requirements-dev.txt
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup.sh: Python 3.11 or newer is needed as '$python'; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [[ ! -x .venv/bin/python ]]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$python" -m venv .venv
    else
      echo "setup.sh: '$python -m venv' failed; install python3-venv (Debian) and run again" >&2
      exit 2
    fi
  fi
fi
# Debian packages of requirements-debian.txt that are missing (the resource and clock faults, the HA stack)
missing=()
while read -r pkg; do
  [[ -z $pkg || $pkg == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done < requirements-debian.txt
if (( ${#missing[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup.sh: these Debian packages are missing (their faults and the HA stack are refused): apt-get install ${missing[*]}" >&2
  fi
fi
stamp=.venv/.installed-$(cat requirements*.txt stack/api/requirements.txt | sha256sum | cut -c1-16)-$(basename $requirements .txt)
if [[ ! -e $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$requirements"
  touch "$stamp"
fi
# Patroni for the replicated stack (requirements-patroni.txt): a virtualenv readable by the unprivileged user
# PostgreSQL runs as, on Debian's Python and the libraries Debian's patroni brought
patroni_venv=/opt/chaos-suite/patroni
patroni_stamp=$patroni_venv/.installed-$(sha256sum requirements-patroni.txt | cut -c1-16)
if [[ $(id -u) == 0 && -x /usr/bin/python3 && ! -e $patroni_stamp ]] && dpkg-query -W -f='${Status}' patroni 2>/dev/null | grep -q 'install ok installed'; then
  rm -rf "$patroni_venv"
  (umask 022 && /usr/bin/python3 -m venv --system-site-packages "$patroni_venv" \
    && "$patroni_venv/bin/python" -m pip install -q --no-deps -r requirements-patroni.txt && touch "$patroni_stamp")
fi
