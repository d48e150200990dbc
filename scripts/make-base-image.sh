#!/usr/bin/env bash
# Make a base image for the docker/podman site image without any image registry:
# Debian bookworm (python3 3.11 with venv and pip) from Debian's mirror, imported into
# the engine. Reused when the engine has it already; podman takes docker's copy if
# there is one. Needs root (debootstrap) and about a minute the first time.
#   scripts/make-base-image.sh docker|podman [IMAGE]     (IMAGE: skupper-py-base:bookworm)
set -euo pipefail
engine=${1:?usage: make-base-image.sh docker|podman [IMAGE]}
image=${2:-skupper-py-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
case "$engine" in docker|podman) ;; *) echo "make-base-image.sh: docker or podman, not $engine" >&2; exit 2;; esac

if "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "$engine has $image already."
  exit 0
fi
if [ "$engine" = podman ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "Copying $image from docker to podman..."
  docker save "$image" | podman load --quiet >/dev/null
  podman tag "localhost/$image" "$image" 2>/dev/null || true
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-base-image.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/skupper-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "Making $image with debootstrap (bookworm, minbase, python3) from $mirror..."
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -5 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$engine" import - "$image" >/dev/null
echo "$engine has $image now."
