#!/usr/bin/env bash
# Tests the Debian package in a clean Debian 12 (bookworm) chroot made by debootstrap from the
# machine's configured Debian mirror: install, the alternatives (and that another package's
# makedumpfile is kept), man pages and completions, `kdump setup --dry-run` from the installed
# files up to the load (the chroot's machine has no crashkernel= reservation), remove, purge.
# Usage: scripts/test-package.sh DEB   (scripts/test.sh runs it after the lab tests)
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(realpath "$1")
version=$(dpkg-deb -f "$deb" Version)

fail() { echo "test-package: FAILED: $*" >&2; exit 1; }

# The configured Debian mirror (deb822 or one-line sources), as the lab finds its kernels.
mirror=$({ grep -rhoE '(URIs:|^deb) +https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
  | grep -v security | head -1 | awk '{print $2}')
[ -n "$mirror" ] || fail "no Debian mirror in /etc/apt/sources.list{,.d}"

base=target/debian/bookworm-base
if [ ! -f "$base/.complete" ]; then
  rm -rf "$base"
  debootstrap --variant=minbase --include=man-db,bash-completion bookworm "$base" "$mirror" >/dev/null
  touch "$base/.complete"
fi
root=target/debian/chroot
mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT
rm -rf "$root"
cp -a "$base" "$root"
for fs in proc sys dev; do
  mount --bind "/$fs" "$root/$fs"
  mounted+=("$root/$fs")
done
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# Another package's makedumpfile at the name: it must stay.
printf '#!/bin/sh\necho the other makedumpfile\n' > "$root/usr/sbin/makedumpfile"
chmod 0755 "$root/usr/sbin/makedumpfile"

cp "$deb" "$root/tmp/kdump.deb"
in_root dpkg -i /tmp/kdump.deb > "$root/tmp/install.log" 2>&1 || { cat "$root/tmp/install.log"; fail "dpkg -i"; }
grep -q "/usr/sbin/makedumpfile belongs to another package: kept" "$root/tmp/install.log" \
  || fail "postinst did not say it kept makedumpfile: $(cat "$root/tmp/install.log")"
[ "$(in_root makedumpfile)" = "the other makedumpfile" ] || fail "the other makedumpfile was replaced"

# The binaries and the names we provide.
[ "$(in_root kdump --version)" = "kdump $version" ] || fail "kdump --version"
in_root vmcore-dmesg --help | grep -q "crashed kernel's log" || fail "vmcore-dmesg (alternative)"
in_root kexec -v | grep -q "^kexec " || fail "kexec (alternative)"
[ "$(in_root readlink -f /usr/sbin/vmcore-dmesg)" = /usr/sbin/kdump ] || fail "vmcore-dmesg link"

# Man pages and completions.
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man kdump' | grep -q "kdump-setup(1)" || fail "man kdump"
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man 5 kdump.toml' | grep -q 'final_action = "reboot"' || fail "man 5 kdump.toml"
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man kdump-dump' | grep -q -- "--dump-level" || fail "man kdump-dump"
# The names provided as alternatives have their pages under those names; makedumpfile's is
# another package's here, so its page is only under our own name.
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man 8 kexec' | grep -q -- "--load-panic" || fail "man 8 kexec"
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man 8 vmcore-dmesg' | grep -q "crashed kernel's log" || fail "man 8 vmcore-dmesg"
in_root sh -c 'MANPAGER=cat MANWIDTH=100 man 8 kdump-makedumpfile' | grep -q -- "--split" || fail "man 8 kdump-makedumpfile"
[ ! -e "$root/usr/share/man/man8/makedumpfile.8.gz" ] || fail "a makedumpfile(8) link beside another package's makedumpfile"
in_root bash -c '. /usr/share/bash-completion/completions/kdump && complete -p kdump' | grep -q kdump \
  || fail "bash completion"
[ -s "$root/usr/share/zsh/vendor-completions/_kdump" ] && [ -s "$root/usr/share/fish/vendor_completions.d/kdump.fish" ] \
  || fail "zsh/fish completions"

# The conffile is the documented defaults: kdump refuses it until a target is named.
in_root kdump config > "$root/tmp/config.log" 2>&1 && fail "the default config needs a target"
grep -q "target.device is not set" "$root/tmp/config.log" || fail "kdump config: $(cat "$root/tmp/config.log")"

# kdump setup from the installed files, with a capture kernel in /boot when the lab has one.
kernel=$(find "${KDUMP_LAB_CACHE:-target/lab-cache}/kernel" -path '*6.1.0-*' -name 'vmlinuz-*' 2>/dev/null | head -1 || true)
if [ -n "$kernel" ]; then
  cp "$kernel" "$root/boot/"
  cat >> "$root/etc/kdump.toml" <<EOF
EOF
  sed -i 's|^# device = "LABEL=crash"|device = "/dev/null"|' "$root/etc/kdump.toml"
  sed -i "s|^kernel = \"\"|kernel = \"/boot/$(basename "$kernel")\"|" "$root/etc/kdump.toml"
  in_root kdump setup --dry-run > "$root/tmp/setup.log" 2>&1 || true
  grep -q "initramfs: /init (kdump)" "$root/tmp/setup.log" || fail "kdump setup: $(cat "$root/tmp/setup.log")"
  grep -q "kernel: /boot/$(basename "$kernel")" "$root/tmp/setup.log" || fail "kdump setup: $(cat "$root/tmp/setup.log")"
  echo "test-package: kdump setup --dry-run built the capture initramfs from the installed kdump"
else
  echo "test-package: no lab kernel in ${KDUMP_LAB_CACHE:-target/lab-cache}: kdump setup not tried"
fi

# Remove: the binaries and our alternatives go, the config stays; purge: the config goes.
mkdir -p "$root/var/lib/kdump" && touch "$root/var/lib/kdump/initramfs.img"
in_root dpkg -r kdump > /dev/null 2>&1 || fail "dpkg -r"
[ ! -e "$root/usr/sbin/kdump" ] || fail "kdump still there after remove"
[ ! -e "$root/usr/sbin/vmcore-dmesg" ] && [ ! -e "$root/usr/sbin/kexec" ] || fail "alternatives left after remove"
[ ! -e "$root/usr/share/man/man8/kexec.8.gz" ] || fail "the kexec(8) link left after remove"
[ "$(in_root makedumpfile)" = "the other makedumpfile" ] || fail "the other makedumpfile after remove"
[ -f "$root/etc/kdump.toml" ] || fail "remove took the config"
in_root dpkg -P kdump > /dev/null 2>&1 || fail "dpkg -P"
[ ! -e "$root/etc/kdump.toml" ] && [ ! -e "$root/var/lib/kdump" ] || fail "purge left the config or /var/lib/kdump"
in_root dpkg -s kdump > /dev/null 2>&1 && fail "still known to dpkg after purge"
echo "test-package: install, alternatives, man, completions, setup, remove and purge passed for kdump $version"
