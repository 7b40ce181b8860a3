//! A live dump (of the running kernel, read from `/proc/kcore`): which task took it.
//!
//! /proc/kcore carries an `NT_TASKSTRUCT` note with a copy of the reading task's
//! `task_struct`, but not its address. The copy holds empty list heads (children, pending
//! signals, ptrace lists, …), and an empty list head points at itself: each gives
//! `address = value - offset`. Several agreeing give the address without knowing the
//! structure's layout, which changes with every kernel.

use std::collections::BTreeMap;

/// The note type crash gives a task (`NT_TASKSTRUCT`).
pub const NT_TASKSTRUCT: u32 = 4;
/// The note name crash reads as "this dump is a snapshot of a live system" (with the
/// address of the task that took it as the descriptor).
pub const SNAP_NOTE_NAME: &[u8] = b"SNAP";

/// Empty list heads that must agree before an address is believed.
const MIN_VOTES: usize = 3;

/// The kernel address of the task whose `task_struct` copy is `image`, found from its empty
/// list heads; `None` when fewer than three agree or two addresses tie.
pub fn task_address(image: &[u8]) -> Option<u64> {
    let word = |o: usize| image.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for offset in (0..image.len().saturating_sub(15)).step_by(8) {
        let (Some(next), Some(prev)) = (word(offset), word(offset + 8)) else { break };
        // A kernel (upper-half) pointer to itself, in a slab object aligned to a cache line.
        if next == prev && next >> 63 == 1 {
            let base = next.wrapping_sub(offset as u64);
            if base % 64 == 0 && base >> 63 == 1 {
                *votes.entry(base).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(usize, u64)> = votes.into_iter().map(|(a, n)| (n, a)).collect();
    ranked.sort_unstable_by(|a, b| b.cmp(a));
    match ranked.as_slice() {
        [(n, a), rest @ ..] if *n >= MIN_VOTES && rest.first().is_none_or(|(m, _)| m < n) => Some(*a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_heads_agree_on_the_address() {
        let task = 0xffff_8880_0412_3440u64;
        let mut image = vec![0u8; 9000];
        let mut put = |o: usize, v: u64| image[o..o + 8].copy_from_slice(&v.to_le_bytes());
        for o in [0x4a8usize, 0x4b8, 0x7c0, 0x1230] {
            put(o, task + o as u64);
            put(o + 8, task + o as u64);
        }
        // A non-empty list and a stray pair elsewhere do not outvote them.
        put(0x100, 0xffff_8880_0999_0000);
        put(0x108, 0xffff_8880_0999_0040);
        put(0x200, 0xffff_8880_0777_0200);
        put(0x208, 0xffff_8880_0777_0200);
        assert_eq!(task_address(&image), Some(task));
        assert_eq!(task_address(&image[..0x7c0]), None, "two votes are not enough");
        assert_eq!(task_address(&[]), None);
        assert_eq!(task_address(&[0xff; 7]), None);
    }
}
