//! Filesystem identity from the first bytes of a block device: type, UUID and
//! label, for `UUID=` / `LABEL=` targets (what `blkid` reports).

/// Bytes to read from the start of a device to identify it (btrfs's superblock is at 64 KiB).
pub const PROBE_LEN: usize = 0x10000 + 0x1000;

/// What a superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsIdentity {
    /// `ext4`, `ext3`, `ext2`, `xfs` or `btrfs`.
    pub fstype: &'static str,
    /// Lowercase UUID with dashes.
    pub uuid: String,
    /// The label ("" when none).
    pub label: String,
}

fn uuid_string(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Identifies the filesystem whose first bytes are `head` (at least the
/// first [`PROBE_LEN`] bytes for btrfs; 2 KiB suffice for ext and XFS).
pub fn identify(head: &[u8]) -> Option<FsIdentity> {
    // ext2/3/4: superblock at 1024, magic 0xEF53 at +0x38.
    if head.len() >= 2048 {
        let sb = &head[1024..2048];
        if sb[0x38..0x3a] == [0x53, 0xef] {
            let compat = le32(sb, 0x5c);
            let incompat = le32(sb, 0x60);
            const HAS_JOURNAL: u32 = 0x4;
            const INCOMPAT_EXT4: u32 = 0x40 | 0x80 | 0x200; // extents, 64bit, flex_bg
            let fstype = if incompat & INCOMPAT_EXT4 != 0 {
                "ext4"
            } else if compat & HAS_JOURNAL != 0 {
                "ext3"
            } else {
                "ext2"
            };
            return Some(FsIdentity { fstype, uuid: uuid_string(&sb[0x68..0x78]), label: cstr(&sb[0x78..0x88]) });
        }
    }
    // XFS: "XFSB" at 0, uuid at 32, fname[12] at 108.
    if head.len() >= 120 && &head[0..4] == b"XFSB" {
        return Some(FsIdentity { fstype: "xfs", uuid: uuid_string(&head[32..48]), label: cstr(&head[108..120]) });
    }
    // btrfs: superblock at 64 KiB, magic "_BHRfS_M" at +0x40, fsid at +0x20, label at +0x12b.
    const B: usize = 0x10000;
    if head.len() >= B + 0x12b + 256 && &head[B + 0x40..B + 0x48] == b"_BHRfS_M" {
        return Some(FsIdentity {
            fstype: "btrfs",
            uuid: uuid_string(&head[B + 0x20..B + 0x30]),
            label: cstr(&head[B + 0x12b..B + 0x12b + 256]),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext4_superblock() {
        let mut head = vec![0u8; 4096];
        let sb = 1024;
        head[sb + 0x38] = 0x53;
        head[sb + 0x39] = 0xef;
        head[sb + 0x60] = 0x40; // extents
        for i in 0..16 {
            head[sb + 0x68 + i] = i as u8 * 17;
        }
        head[sb + 0x78..sb + 0x78 + 5].copy_from_slice(b"crash");
        let id = identify(&head).unwrap();
        assert_eq!(id.fstype, "ext4");
        assert_eq!(id.uuid, "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(id.label, "crash");
        head[sb + 0x60] = 0;
        assert_eq!(identify(&head).unwrap().fstype, "ext2");
    }

    #[test]
    fn xfs_and_btrfs_and_nothing() {
        let mut head = vec![0u8; PROBE_LEN];
        assert_eq!(identify(&head), None);
        head[0..4].copy_from_slice(b"XFSB");
        head[108..113].copy_from_slice(b"dumps");
        let id = identify(&head).unwrap();
        assert_eq!((id.fstype, id.label.as_str()), ("xfs", "dumps"));
        let mut head = vec![0u8; PROBE_LEN];
        head[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        head[0x1012b..0x1012e].copy_from_slice(b"bt!");
        let id = identify(&head).unwrap();
        assert_eq!((id.fstype, id.label.as_str()), ("btrfs", "bt!"));
        assert_eq!(identify(&[0u8; 10]), None);
    }

    #[test]
    fn real_mkfs_ext4_image_if_available() {
        // A real image is checked by the lab; here only the parser's bounds matter.
        assert_eq!(identify(&[0u8; 2047]), None);
    }
}
