#!/usr/bin/env bash
# Builds the Debian package: target/debian/kdump_<version>_amd64.deb.
#   /usr/sbin/kdump            the static kdump (also the capture initramfs's /init)
#   /usr/lib/kdump/kexec       the static kexec
#   makedumpfile, vmcore-dmesg, kexec: alternatives (update-alternatives) that point at them,
#     installed by postinst only where no other file holds the name (kexec-tools' and
#     makedumpfile's own files are never replaced)
#   kdump.service, the hotplug udev rule, man pages (kdump*.1, kdump.toml.5; kdump-makedumpfile.8,
#     kdump-vmcore-dmesg.8, kdump-kexec.8, linked as makedumpfile(8), vmcore-dmesg(8), kexec(8)
#     with the alternatives), bash/zsh/fish
#   completions, and /etc/kdump.toml (a conffile: every key with its default, commented)
# Usage: scripts/package-deb.sh [--no-build]   (--no-build: take the static binaries as built)
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
if [ "${1:-}" != "--no-build" ]; then
  RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target $target --bin kexec --bin kdump
fi
bin=target/$target/release
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=target/debian
root=$out/root
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/sbin" "$root/usr/lib/kdump" "$root/lib/systemd/system" \
  "$root/lib/udev/rules.d" "$root/usr/share/man/man1" "$root/usr/share/man/man5" "$root/usr/share/man/man8" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/doc/kdump" "$root/etc"

install -m 0755 "$bin/kdump" "$root/usr/sbin/kdump"
install -m 0755 "$bin/kexec" "$root/usr/lib/kdump/kexec"
install -m 0644 packaging/kdump.service "$root/lib/systemd/system/kdump.service"
install -m 0644 packaging/98-kdump-hotplug.rules "$root/lib/udev/rules.d/98-kdump-hotplug.rules"
"$bin/kdump" config --defaults > "$root/etc/kdump.toml"
chmod 0644 "$root/etc/kdump.toml"

man=$(mktemp -d)
trap 'rm -rf "$man"' EXIT
"$bin/kdump" man --out "$man" 2>/dev/null
for page in "$man"/*.1; do gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"; done
gzip -9n < "$man/kdump.toml.5" > "$root/usr/share/man/man5/kdump.toml.5.gz"
for page in "$man"/*.8; do gzip -9n < "$page" > "$root/usr/share/man/man8/$(basename "$page").gz"; done
"$bin/kexec" --man-page | gzip -9n > "$root/usr/share/man/man8/kdump-kexec.8.gz"
"$bin/kdump" completions bash > "$root/usr/share/bash-completion/completions/kdump"
"$bin/kdump" completions zsh > "$root/usr/share/zsh/vendor-completions/_kdump"
"$bin/kdump" completions fish > "$root/usr/share/fish/vendor_completions.d/kdump.fish"
cp LICENSE "$root/usr/share/doc/kdump/copyright"
for doc in README.md docs/CONFIG.md docs/OPTIONS.md docs/JSON.md; do
  gzip -9n < "$doc" > "$root/usr/share/doc/kdump/$(basename "$doc").gz"
done

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: kdump
Version: $version
Architecture: amd64
Maintainer: kdump developers <kdump@localhost>
Installed-Size: $size
Section: admin
Priority: optional
Homepage: https://github.com/kdump-rs/kdump
Description: kernel crash dumps: kexec, capture, analysis and the service in one static binary
 kdump loads a capture kernel (kexec_file_load or kexec_load), and in it saves the
 crashed kernel's memory filtered and compressed (makedumpfile's formats and options),
 its log and a crash report, to a local disk, over ssh or to S3-compatible object
 storage; it reads the dumps back (log, panic, backtrace) without debug info.
 The makedumpfile, vmcore-dmesg and kexec names are provided as alternatives where
 no other package holds them.
EOF
printf '/etc/kdump.toml\n' > "$root/DEBIAN/conffiles"

cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  # The names distribution scripts call, where no other package's file holds them, each with
  # its man page.
  for pair in makedumpfile:/usr/sbin/kdump vmcore-dmesg:/usr/sbin/kdump kexec:/usr/lib/kdump/kexec; do
    name=${pair%%:*}; path=${pair#*:}
    link=/usr/sbin/$name
    page=/usr/share/man/man8/$name.8.gz
    if [ ! -e "$link" ] || [ -L "$link" ]; then
      update-alternatives --quiet --install "$link" "$name" "$path" 10 \
        --slave "$page" "$name.8.gz" "/usr/share/man/man8/kdump-$name.8.gz"
    else
      echo "kdump: $link belongs to another package: kept; call kdump as kdump" >&2
    fi
  done
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
  fi
  echo "kdump: configure /etc/kdump.toml (target.device), then: kdump setup; systemctl enable --now kdump"
fi
EOF

cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = deconfigure ]; then
  update-alternatives --quiet --remove makedumpfile /usr/sbin/kdump 2>/dev/null || true
  update-alternatives --quiet --remove vmcore-dmesg /usr/sbin/kdump 2>/dev/null || true
  update-alternatives --quiet --remove kexec /usr/lib/kdump/kexec 2>/dev/null || true
  if [ -d /run/systemd/system ]; then
    systemctl stop kdump.service 2>/dev/null || true
  fi
fi
EOF

cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  # What kdump setup wrote: the capture initramfs and its stamp.
  rm -rf /var/lib/kdump
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

deb="$out/kdump_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
