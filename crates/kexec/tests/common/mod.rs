//! What the kexec tests share.

/// A deterministic stand-in for Debian's bzImage: a real 2.15 setup header (64-bit entry,
/// relocatable, 5-level capable, init_size 0x3378000) and `payload` bytes after it.
pub fn fake_bzimage(payload: u32) -> Vec<u8> {
    let setup_sects = 27u8;
    let mut b = vec![0u8; (usize::from(setup_sects) + 1) * 512];
    b[0x1f1] = setup_sects;
    b[0x1fe] = 0x55;
    b[0x1ff] = 0xaa;
    b[0x200] = 0xeb;
    b[0x201] = 0x6a;
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x211] = 1;
    b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    b[0x234] = 1;
    b[0x236..0x238].copy_from_slice(&0x7fu16.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    b[0x260..0x264].copy_from_slice(&0x337_8000u32.to_le_bytes());
    b.extend((0..payload).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    b
}
