#!/usr/bin/env bash
# Installs the Debian packages the lab and the tests need, if any is missing.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run twice.
set -euo pipefail

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
command -v makedumpfile >/dev/null || need+=(makedumpfile)
command -v gdb >/dev/null || need+=(gdb)
# The split test opens the parts with crash (and the kernel's debug vmlinux, fetched by the lab).
command -v crash >/dev/null || need+=(crash)
command -v dpkg >/dev/null || need+=(dpkg)
# The ssh target's tests run a real sshd on 127.0.0.1 (crates/kdump-ssh/tests/sshd.rs).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
# The fleet report's test screenshots the page in headless Chromium (crates/kdump/tests/fleet.rs).
command -v chromium >/dev/null || need+=(chromium)
# The NFS target's lab tests run NFS-Ganesha (user space, FSAL VFS) on 127.0.0.1 (crates/kdump-lab/src/ganesha.rs).
command -v ganesha.nfsd >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ] || need+=(nfs-ganesha nfs-ganesha-vfs)
# Its NFSv3 test runs it with an rpcbind of its own in namespaces made with unshare/nsenter and ip.
command -v rpcbind >/dev/null || need+=(rpcbind)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
# The Debian package is tested in a bookworm chroot (scripts/test-package.sh).
command -v debootstrap >/dev/null || need+=(debootstrap)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
elif ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
  # The lab resolves its kernel through apt; it needs package lists.
  apt-get update -q
fi

# SeaweedFS, the S3 server the tests of crates/kdump-s3 start on 127.0.0.1.
bash "$(dirname "${BASH_SOURCE[0]}")/seaweedfs.sh"
