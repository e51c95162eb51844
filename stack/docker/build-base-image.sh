#!/usr/bin/env bash
# Builds the base image the Dockerfiles start FROM without any registry:
# debootstrap a minimal Debian into a directory, `docker import` it, tag it.
#
#   bash stack/docker/build-base-image.sh [--force] [TAG]     (TAG default: debian:bookworm-slim)
#
# Needs root, debootstrap and a Docker daemon. The Debian mirror is the host's own
# (the first deb.debian.org-style URI in /etc/apt/sources.list*), or DEBIAN_MIRROR.
# Skips the build when TAG exists already, unless --force.
# The image trusts the CA certificates the host added locally (EXTRA_CA_DIR, default
# /usr/local/share/ca-certificates), so apt and pip in the builds work behind a TLS-inspecting
# proxy exactly as they do on the host; EXTRA_CA_DIR= (empty) leaves them out.
set -euo pipefail
force=0
if [[ "${1:-}" == "--force" ]]; then force=1; shift; fi
tag=${1:-debian:bookworm-slim}
suite=${DEBIAN_SUITE:-bookworm}

if [[ $force == 0 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "build-base-image: $tag exists already ($(docker image inspect -f '{{.Id}}' "$tag" | cut -c1-19)); --force rebuilds it"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "build-base-image: debootstrap needs root; run as root (or pull $tag from a registry instead)" >&2
  exit 2
fi
command -v debootstrap >/dev/null || { echo "build-base-image: debootstrap is missing: apt-get install -y debootstrap" >&2; exit 2; }

host_mirror() {
  # the Debian archive the host itself uses (one-line and deb822 formats), never its security archive
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v -- '-security' | head -1 | tr -d ' ' | sed 's:/$::' || true
}
mirror=${DEBIAN_MIRROR:-$(host_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}

started=$(date +%s)
root=$(mktemp -d /var/tmp/chaos-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-base-image: debootstrap $suite from $mirror into $root"
debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" > "$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# what the official slim image does: apt sources for the same archive, no docs, no recommends, no caches
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES
cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
cat > "$root/etc/apt/apt.conf.d/docker-slim" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*.log
extra_ca=${EXTRA_CA_DIR-/usr/local/share/ca-certificates}
if [[ -n "$extra_ca" ]] && compgen -G "$extra_ca/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp "$extra_ca"/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
  echo "build-base-image: trusting the host's local CA certificates from $extra_ca"
fi
: > "$root/etc/hostname"
: > "$root/etc/resolv.conf"

tar --numeric-owner -C "$root" -c . \
  | docker import --change 'CMD ["bash"]' --change "LABEL org.chaos-suite.base=debootstrap-$suite" - "$tag" >/dev/null
echo "build-base-image: $tag built from $mirror in $(( $(date +%s) - started )) s" \
     "($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
