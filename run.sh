#!/usr/bin/env bash
# CCIS Workbench: one script that sets up a machine and runs the workbench or its tests.
#   ./run.sh app [ARGS...]   install what is missing, then start the workbench (ARGS go to ccis-workbench)
#   ./run.sh test [PYTEST ARGS...]   install what is missing, start libvirtd if needed, run the whole test suite
#   ./run.sh setup           install only
# System packages come from apt (Debian/Ubuntu) or dnf (CentOS/Fedora); Python packages go into ./.venv.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
VENV=${CCIS_VENV:-$HERE/.venv}
PY=${PYTHON:-python3}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# linux-image-amd64, busybox-static and extlinux: the rehearsal install tree is built from the host's own packages;
# podman and runc: container images (the docker target's rootfs tar) are checked in podman containers
APT_PACKAGES=(python3-venv virtinst python3-dev gcc libc6-dev git pkg-config libvirt-dev libvirt-daemon-system libvirt-clients
  qemu-system-x86 qemu-utils busybox-static cpio xorriso syslinux extlinux syslinux-common mtools dosfstools
  e2fsprogs fdisk util-linux curl librsvg2-bin tmux libkrb5-dev linux-image-amd64 vagrant vagrant-libvirt
  debootstrap cloud-init openssh-client openssh-server rsync podman runc netavark uidmap catatonit libxml2-utils libarchive-tools kmod gpg gpgv gpgconf
  procps ovmf systemd-boot-efi)
DNF_PACKAGES=(python3 python3-devel gcc git pkgconf-pkg-config libvirt-devel libvirt-daemon-kvm libvirt-client
  qemu-kvm qemu-img busybox cpio xorriso syslinux syslinux-extlinux mtools dosfstools e2fsprogs util-linux
  curl librsvg2-tools tmux krb5-devel podman runc glibc-static libxml2 cloud-init debootstrap openssh-clients openssh-server rsync
  virt-install vagrant bsdtar gnupg2 edk2-ovmf systemd-boot-unsigned procps-ng shadow-utils)

system_packages() {
  if command -v apt-get >/dev/null 2>&1; then
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      say "apt: installing ${missing[*]}"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  elif command -v dnf >/dev/null 2>&1; then
    say "dnf: installing system packages"
    # strict=0: a package this distribution does not ship (vagrant on CentOS) is skipped, not fatal; the tests that
    # need it then fail with its name
    as_root dnf install -y -q --setopt=strict=0 "${DNF_PACKAGES[@]}"
  else
    say "neither apt-get nor dnf found: install the packages listed in README.md by hand"
  fi
}

python_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.ccis-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "pip: installing ccis-workbench and its dependencies"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e ".[test,libvirt]"
    touch "$stamp"
  fi
}

start_libvirtd() {
  command -v virsh >/dev/null 2>&1 || return 0
  if virsh -c qemu:///system version >/dev/null 2>&1; then return 0; fi
  say "starting virtlogd and libvirtd (no service manager here)"
  if [ "$(id -u)" -eq 0 ] && [ ! -d /run/systemd/system ]; then
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
  else
    as_root systemctl start libvirtd 2>/dev/null || { as_root virtlogd -d; as_root libvirtd -d; }
  fi
  for _ in $(seq 1 50); do virsh -c qemu:///system version >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "libvirtd did not answer; tests that need it will fail with its reason"
}

cmd=${1:-app}
shift || true
case "$cmd" in
  setup) system_packages; python_env ;;
  app) system_packages; python_env; start_libvirtd; exec "$VENV/bin/ccis-workbench" "$@" ;;
  test)
    system_packages; python_env; start_libvirtd
    say "static checks: ruff, mypy (core and flows), import contracts (lint-imports)"
    "$VENV/bin/ruff" check ccis_workbench tests benchmarks scripts
    "$VENV/bin/mypy"
    "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
    say "running the test suite"
    exec "$VENV/bin/python" -m pytest "$@" ;;
  *) echo "usage: $0 app|test|setup [args...]" >&2; exit 2 ;;
esac
