#!/usr/bin/env bash
# A newer QEMU for the crash lab, without touching the system's packages: Debian 12's QEMU 7.2
# does not emulate the SHA extensions under TCG (QEMU 8.1 and later do), so the lab's SHA-NI
# purgatory tests (crates/kdump-lab/tests/kexec_load.rs) run it when PATH has no QEMU 8.1+.
# Downloads qemu-system-x86, qemu-system-data and seabios from bookworm-backports with apt-get
# and a private package list (the system's apt state is not touched), unpacks them with dpkg -x
# into target/qemu-backports and writes a qemu-system-x86_64 wrapper there. Prints the wrapper's
# directory, e.g. to put first in PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/target/qemu-backports
apt=$root/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$root/debs" "$root/bin"
echo "deb http://deb.debian.org/debian bookworm-backports main" > "$apt/sources.list"
opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
if [ ! -x "$root/usr/bin/qemu-system-x86_64" ]; then
  apt-get "${opts[@]}" update >&2
  (cd "$root/debs" && apt-get "${opts[@]}" download \
      qemu-system-x86/bookworm-backports qemu-system-data/bookworm-backports seabios/bookworm-backports >&2)
  for deb in "$root"/debs/*.deb; do dpkg -x "$deb" "$root"; done
fi
cat > "$root/bin/qemu-system-x86_64" <<WRAPPER
#!/bin/sh
exec $root/usr/bin/qemu-system-x86_64 -L $root/usr/share/qemu -L $root/usr/share/seabios "\$@"
WRAPPER
chmod +x "$root/bin/qemu-system-x86_64"
"$root/bin/qemu-system-x86_64" --version | head -1 >&2
echo "$root/bin"
