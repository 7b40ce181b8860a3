//! The kernel log, read from the printk buffer of the crashed kernel.
//!
//! Two layouts exist: the lockless ring buffer (Linux 5.10+: descriptors,
//! infos and a text data ring) and the older variable-length `log_buf` of
//! `struct printk_log` records (3.5–5.9). Both are found through VMCOREINFO.

use serde::Serialize;

use crate::memory::{KernelMemory, PhysRead};
use crate::vmcoreinfo::Vmcoreinfo;
use crate::{Error, Result};

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Sequence number (lockless ring only; 0 for old layouts).
    pub seq: u64,
    /// Nanoseconds since boot.
    pub ts_nsec: u64,
    /// Log level 0 (emerg) to 7 (debug), when the layout records it.
    pub level: Option<u8>,
    /// `T<pid>` or `C<cpu>` of the writer, when the layout records it (always in the
    /// lockless ring of 5.10+; in `printk_log` with CONFIG_PRINTK_CALLER, 5.1–5.9).
    pub caller: Option<String>,
    /// The message bytes (not NUL-terminated; may hold newlines).
    #[serde(serialize_with = "lossy")]
    pub text: Vec<u8>,
}

fn lossy<S: serde::Serializer>(text: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(text))
}

/// Longest buffer a log layout may claim before it is called corrupt (the
/// kernel's maximum log_buf_len is 2^25; rings are smaller).
const MAX_LOG_BYTES: u64 = 1 << 28;

/// Reads every record of the crashed kernel's log, oldest first.
pub fn read_log<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Vec<Record>> {
    if info.get("SYMBOL(prb)").is_some() {
        read_lockless(mem, info)
    } else if info.get("SYMBOL(log_buf)").is_some() {
        read_log_buf(mem, info)
    } else {
        Err(Error::MissingKey("SYMBOL(prb) or SYMBOL(log_buf)".into()))
    }
}

/// `caller_id` as the kernel prints it: bit 31 set means a CPU number (the
/// message came from interrupt context), else a task id (0 is the idle task).
fn caller_name(id: u32) -> String {
    const CPU: u32 = 0x8000_0000;
    if id & CPU != 0 { format!("C{}", id & !CPU) } else { format!("T{id}") }
}

const STATE_COMMITTED: u64 = 1;
const STATE_FINALIZED: u64 = 2;

fn read_lockless<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Vec<Record>> {
    let prb = mem.read_u64(info.symbol("prb")?)?;
    let desc_ring = prb + info.offset("printk_ringbuffer.desc_ring")?;
    let text_ring = prb + info.offset("printk_ringbuffer.text_data_ring")?;
    let counter = info.offset("atomic_long_t.counter")?;

    let count_bits = mem.read_u32(desc_ring + info.offset("prb_desc_ring.count_bits")?)?;
    let size_bits = mem.read_u32(text_ring + info.offset("prb_data_ring.size_bits")?)?;
    if count_bits > 24 || size_bits > 31 {
        return Err(Error::Corrupt(format!("printk ring sizes 2^{count_bits} records / 2^{size_bits} bytes")));
    }
    let count = 1u64 << count_bits;
    let size = 1u64 << size_bits;
    let desc_size = info.size("prb_desc")?;
    let info_size = info.size("printk_info")?;
    let descs_at = mem.read_u64(desc_ring + info.offset("prb_desc_ring.descs")?)?;
    let infos_at = mem.read_u64(desc_ring + info.offset("prb_desc_ring.infos")?)?;
    let data_at = mem.read_u64(text_ring + info.offset("prb_data_ring.data")?)?;
    let tail_id = mem.read_u64(desc_ring + info.offset("prb_desc_ring.tail_id")? + counter)?;
    let head_id = mem.read_u64(desc_ring + info.offset("prb_desc_ring.head_id")? + counter)?;
    if desc_size > 4096 || info_size > 4096 {
        return Err(Error::Corrupt(format!("printk record sizes {desc_size}/{info_size}")));
    }

    let o_state = info.offset("prb_desc.state_var")? + counter;
    let o_begin = info.offset("prb_desc.text_blk_lpos")? + info.offset("prb_data_blk_lpos.begin")?;
    let o_next = info.offset("prb_desc.text_blk_lpos")? + info.offset("prb_data_blk_lpos.next")?;
    let o_seq = info.offset("printk_info.seq")?;
    let o_ts = info.offset("printk_info.ts_nsec")?;
    let o_len = info.offset("printk_info.text_len")?;
    let o_caller = info.offset("printk_info.caller_id").ok();

    // Records are read one at a time (descriptor, info, text), so memory use
    // does not depend on the ring sizes the dump claims.
    let mut desc = vec![0u8; crate::to_usize(desc_size)];
    let mut inf = vec![0u8; crate::to_usize(info_size)];
    let field = |buf: &[u8], at: u64, width: usize| -> Result<u64> {
        let at = usize::try_from(at).map_err(|_| Error::Corrupt("offset overflow".into()))?;
        let end = at.checked_add(width).ok_or_else(|| Error::Corrupt("offset overflow".into()))?;
        let bytes = buf.get(at..end).ok_or_else(|| Error::Corrupt("printk field outside its record".into()))?;
        let mut v = [0u8; 8];
        v[..width].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(v))
    };

    // Descriptor IDs carry two state bits at the top of an unsigned long.
    const ID_MASK: u64 = !(3 << 62);
    let mut records = Vec::new();
    let mut id = tail_id & ID_MASK;
    let head = head_id & ID_MASK;
    let mut steps = 0u64;
    loop {
        let slot = id % count;
        mem.read(descs_at.wrapping_add(slot * desc_size), &mut desc)?;
        let state_var = field(&desc, o_state, 8)?;
        let state = state_var >> 62;
        if state_var & ID_MASK == id && (state == STATE_COMMITTED || state == STATE_FINALIZED) {
            let mut begin = field(&desc, o_begin, 8)? % size;
            let next = field(&desc, o_next, 8)? % size;
            if begin != next {
                mem.read(infos_at.wrapping_add(slot * info_size), &mut inf)?;
                if begin > next {
                    begin = 0; // the block wrapped: its text starts at the ring's start
                }
                begin += 8; // each data block starts with its descriptor id
                let text_len = field(&inf, o_len, 2)?;
                let len = text_len.min(next.saturating_sub(begin));
                let mut text = vec![0u8; crate::to_usize(len)];
                mem.read(data_at.wrapping_add(begin), &mut text)?;
                // The level is the top 3 bits of the byte after `facility`
                // (`u8 facility; u8 flags:5; u8 level:3;` follows text_len).
                let level = field(&inf, o_len + 3, 1).ok().and_then(|b| u8::try_from(b >> 5).ok());
                let caller = match o_caller {
                    Some(o) => u32::try_from(field(&inf, o, 4)?).ok().map(caller_name),
                    None => None,
                };
                records.push(Record {
                    seq: field(&inf, o_seq, 8)?,
                    ts_nsec: field(&inf, o_ts, 8)?,
                    level,
                    caller,
                    text,
                });
            }
        }
        if id == head {
            break;
        }
        id = (id + 1) & ID_MASK;
        steps += 1;
        if steps > count * 2 {
            return Err(Error::Corrupt("printk ring tail never reaches its head".into()));
        }
    }
    Ok(records)
}

fn read_log_buf<P: PhysRead>(mem: &mut KernelMemory<P>, info: &Vmcoreinfo) -> Result<Vec<Record>> {
    let buf_at = mem.read_u64(info.symbol("log_buf")?)?;
    let len = u64::from(mem.read_u32(info.symbol("log_buf_len")?)?);
    let first = u64::from(mem.read_u32(info.symbol("log_first_idx")?)?);
    let next = u64::from(mem.read_u32(info.symbol("log_next_idx")?)?);
    // `struct log` before 3.11, `struct printk_log` after.
    let name = if info.get("SIZE(printk_log)").is_some() { "printk_log" } else { "log" };
    let hdr = info.size(name)?;
    let o_ts = info.offset(&format!("{name}.ts_nsec"))?;
    let o_len = info.offset(&format!("{name}.len"))?;
    let o_text_len = info.offset(&format!("{name}.text_len"))?;
    // Exported only by kernels built with CONFIG_PRINTK_CALLER.
    let o_caller = info.offset(&format!("{name}.caller_id")).ok();
    let buf = mem.read_vec(buf_at, len, MAX_LOG_BYTES, "log_buf")?;
    let u16_at = |at: u64| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        buf.get(at..at + 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let mut records = Vec::new();
    let mut idx = first;
    let mut wrapped = false;
    while idx != next {
        // A zero length (or the very end) marks the end of the buffer: continue at its start.
        let rec_len = if idx >= len { 0 } else { u16_at(idx + o_len).unwrap_or(0) };
        if rec_len == 0 {
            if wrapped {
                return Err(Error::Corrupt("log_buf wraps twice".into()));
            }
            wrapped = true;
            idx = 0;
            continue;
        }
        let at = usize::try_from(idx).map_err(|_| Error::Corrupt("log_buf index".into()))?;
        let ts = buf
            .get(at + crate::to_usize(o_ts)..at + crate::to_usize(o_ts) + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .ok_or_else(|| Error::Corrupt("log_buf record header".into()))?;
        let text_len = u16_at(idx + o_text_len).unwrap_or(0);
        let start = at + crate::to_usize(hdr);
        let text = buf.get(start..start + crate::to_usize(text_len)).unwrap_or_default().to_vec();
        let caller = o_caller.and_then(|o| {
            let o = at.checked_add(usize::try_from(o).ok()?)?;
            buf.get(o..o.checked_add(4)?).map(|b| caller_name(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        });
        records.push(Record { seq: 0, ts_nsec: ts, level: None, caller, text });
        idx += rec_len;
        if idx > len || records.len() as u64 > len {
            return Err(Error::Corrupt("log_buf record runs past the buffer".into()));
        }
    }
    Ok(records)
}

/// Formats records exactly as `makedumpfile --dump-dmesg` does (Debian's
/// 1.7.2): a `[%5lu.%06lu] ` prefix, continuation lines indented to match,
/// non-printable bytes as `\xNN` (bytes ≥ 0x80 as makedumpfile prints a
/// negative `char`: `\xffffffNN`).
pub fn format_like_makedumpfile(records: &[Record]) -> Vec<u8> {
    format_log(records, false)
}

/// Width of the caller column: makedumpfile's `PID_CHARS_DEFAULT`.
const CALLER_WIDTH: usize = 8;

/// [`format_like_makedumpfile`], with `caller_id` the caller column that
/// makedumpfile 1.7.5+ adds after the timestamp: `[%8s] ` of `T<pid>` or
/// `C<cpu>`, e.g. `[    0.000000] [      T0] Linux version …`, continuation
/// lines indented past it. Records whose layout has no caller id get no column.
pub fn format_log(records: &[Record], caller_id: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let mut prefix = format!("[{:5}.{:06}] ", r.ts_nsec / 1_000_000_000, (r.ts_nsec % 1_000_000_000) / 1000);
        if let (true, Some(caller)) = (caller_id, &r.caller) {
            prefix.push_str(&format!("[{caller:>CALLER_WIDTH$}] "));
        }
        out.extend_from_slice(prefix.as_bytes());
        for &b in &r.text {
            match b {
                b'\n' => {
                    out.push(b'\n');
                    out.extend(std::iter::repeat_n(b' ', prefix.len()));
                }
                0x20..=0x7e | b'\t' | 0x0b | 0x0c | b'\r' => out.push(b),
                0x80.. => out.extend_from_slice(format!("\\x{:08x}", i32::from(b as i8) as u32).as_bytes()),
                _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            }
        }
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;
    use crate::memory::tests::layout;
    use crate::memory::{FlatMemory, START_KERNEL_MAP};

    fn put(mem: &mut FlatMemory, at: u64, bytes: &[u8]) {
        mem.bytes[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    /// A lockless ring with the 6.1 layout, everything in kernel-text memory.
    fn lockless(messages: &[(&[u8], u64)], tail_offset: u64) -> (KernelMemory<FlatMemory>, Vmcoreinfo) {
        let info = Vmcoreinfo::parse(
            b"SYMBOL(prb)=ffffffff80010000\nOFFSET(printk_ringbuffer.desc_ring)=0\n\
OFFSET(printk_ringbuffer.text_data_ring)=48\nOFFSET(prb_desc_ring.count_bits)=0\nOFFSET(prb_desc_ring.descs)=8\n\
OFFSET(prb_desc_ring.infos)=16\nOFFSET(prb_desc_ring.head_id)=24\nOFFSET(prb_desc_ring.tail_id)=32\n\
SIZE(prb_desc)=24\nOFFSET(prb_desc.state_var)=0\nOFFSET(prb_desc.text_blk_lpos)=8\nOFFSET(prb_data_blk_lpos.begin)=0\n\
OFFSET(prb_data_blk_lpos.next)=8\nSIZE(printk_info)=88\nOFFSET(printk_info.seq)=0\nOFFSET(printk_info.ts_nsec)=8\n\
OFFSET(printk_info.text_len)=16\nOFFSET(printk_info.caller_id)=20\nOFFSET(prb_data_ring.size_bits)=0\n\
OFFSET(prb_data_ring.data)=8\nOFFSET(atomic_long_t.counter)=0\n",
        );
        let mut mem = FlatMemory { bytes: vec![0; 1 << 20], base: 0 };
        let (prb_ptr, prb, descs, infos, data) = (0x10000u64, 0x11000u64, 0x12000u64, 0x13000u64, 0x20000u64);
        let k = |p: u64| START_KERNEL_MAP + p;
        put(&mut mem, prb_ptr, &k(prb).to_le_bytes());
        put(&mut mem, prb, &4u32.to_le_bytes()); // 16 descriptors
        put(&mut mem, prb + 8, &k(descs).to_le_bytes());
        put(&mut mem, prb + 16, &k(infos).to_le_bytes());
        put(&mut mem, prb + 48, &12u32.to_le_bytes()); // 4 KiB text ring
        put(&mut mem, prb + 56, &k(data).to_le_bytes());
        let mut lpos = 0u64;
        let first_id = tail_offset;
        for (i, (text, ts)) in messages.iter().enumerate() {
            let id = first_id + i as u64;
            let slot = id % 16;
            let block = (8 + text.len() as u64).div_ceil(8) * 8;
            put(&mut mem, data + lpos % 4096, &id.to_le_bytes());
            put(&mut mem, data + lpos % 4096 + 8, text);
            let d = descs + slot * 24;
            put(&mut mem, d, &(id | (STATE_FINALIZED << 62)).to_le_bytes());
            put(&mut mem, d + 8, &lpos.to_le_bytes());
            put(&mut mem, d + 16, &(lpos + block).to_le_bytes());
            let inf = infos + slot * 88;
            put(&mut mem, inf, &(id * 10).to_le_bytes());
            put(&mut mem, inf + 8, &ts.to_le_bytes());
            put(&mut mem, inf + 16, &(text.len() as u16).to_le_bytes());
            put(&mut mem, inf + 19, &[6 << 5]);
            put(&mut mem, inf + 20, &(0x8000_0001u32).to_le_bytes());
            lpos += block;
        }
        put(&mut mem, prb + 32, &first_id.to_le_bytes());
        put(&mut mem, prb + 24, &(first_id + messages.len() as u64 - 1).to_le_bytes());
        (KernelMemory::new(mem, layout(false)), info)
    }

    #[test]
    fn lockless_ring_in_order_with_metadata() {
        let (mut mem, info) = lockless(&[(b"Linux version 6.1", 0), (b"second\nline", 1_500_000_000)], 3);
        let records = read_log(&mut mem, &info).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].text, b"Linux version 6.1");
        assert_eq!(records[1].ts_nsec, 1_500_000_000);
        assert_eq!(records[1].level, Some(6));
        assert_eq!(records[1].caller.as_deref(), Some("C1"));
        let text = format_like_makedumpfile(&records);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "[    0.000000] Linux version 6.1\n[    1.500000] second\n               line\n"
        );
    }

    #[test]
    fn skips_records_whose_id_does_not_match() {
        let (mut mem, info) = lockless(&[(b"a", 0), (b"b", 0), (b"c", 0)], 0);
        // Corrupt descriptor 1's id: it must be skipped, not misread.
        let descs = 0x12000usize + 24;
        mem.phys().bytes[descs] ^= 0x40;
        let records = read_log(&mut mem, &info).unwrap();
        assert_eq!(records.iter().map(|r| r.text.clone()).collect::<Vec<_>>(), vec![b"a".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn caller_ids_zero_is_the_idle_task() {
        let (mut mem, info) = lockless(&[(b"Linux version 6.1", 0)], 0);
        mem.phys().bytes[0x13000 + 20..0x13000 + 24].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(read_log(&mut mem, &info).unwrap()[0].caller.as_deref(), Some("T0"));
        assert_eq!(caller_name(0x8000_0000 | 17), "C17");
        assert_eq!(caller_name(4321), "T4321");
    }

    /// The caller column as makedumpfile 1.7.5's printk.c writes it:
    /// `sprintf(cidbuf, "%c%u", …)` then `"[%*s] "` with width 8, after the
    /// timestamp; `indent_len = strlen(buf)` covers both prefixes.
    #[test]
    fn caller_column_like_makedumpfile_1_7_5() {
        let rec = |ts: u64, caller: Option<&str>, text: &[u8]| Record {
            seq: 0,
            ts_nsec: ts,
            level: None,
            caller: caller.map(str::to_string),
            text: text.to_vec(),
        };
        let records = vec![
            rec(0, Some("T0"), b"Linux version 6.1.0"),
            rec(1_234_567_890, Some("C1"), b"two\nlines"),
            rec(99_000_001_000, Some("T123456789"), b"wide"),
            rec(5, None, b"no caller recorded"),
        ];
        let expected = "[    0.000000] [      T0] Linux version 6.1.0\n\
[    1.234567] [      C1] two\n                          lines\n\
[   99.000001] [T123456789] wide\n\
[    0.000000] no caller recorded\n";
        assert_eq!(String::from_utf8(format_log(&records, true)).unwrap(), expected);
        // Without the option the output is makedumpfile 1.7.2's, caller ids or not.
        let plain = "[    0.000000] Linux version 6.1.0\n[    1.234567] two\n               lines\n\
[   99.000001] wide\n[    0.000000] no caller recorded\n";
        assert_eq!(String::from_utf8(format_like_makedumpfile(&records)).unwrap(), plain);
    }

    #[test]
    fn escapes_like_makedumpfile() {
        let r = Record { seq: 0, ts_nsec: 12_345_678_901, level: None, caller: None, text: b"a\x01\xc3\tb".to_vec() };
        assert_eq!(String::from_utf8(format_like_makedumpfile(&[r])).unwrap(), "[   12.345678] a\\x01\\xffffffc3\tb\n");
    }

    #[test]
    fn old_log_buf_layout() {
        const KEYS: &[u8] = b"SYMBOL(log_buf)=ffffffff80010000\nSYMBOL(log_buf_len)=ffffffff80010008\nSYMBOL(log_first_idx)=ffffffff8001000c\n\
SYMBOL(log_next_idx)=ffffffff80010010\nSIZE(printk_log)=16\nOFFSET(printk_log.ts_nsec)=0\nOFFSET(printk_log.len)=8\n\
OFFSET(printk_log.text_len)=10\n";
        let info = Vmcoreinfo::parse(KEYS);
        let mut mem = FlatMemory { bytes: vec![0; 1 << 20], base: 0 };
        let buf = 0x20000u64;
        put(&mut mem, 0x10000, &(START_KERNEL_MAP + buf).to_le_bytes());
        put(&mut mem, 0x10008, &80u32.to_le_bytes());
        // Record "x" at 40 (wrapping), record "hello" at 0.
        put(&mut mem, buf + 40, &7u64.to_le_bytes());
        put(&mut mem, buf + 48, &24u16.to_le_bytes());
        put(&mut mem, buf + 50, &1u16.to_le_bytes());
        put(&mut mem, buf + 56, b"x");
        put(&mut mem, buf, &9u64.to_le_bytes());
        put(&mut mem, buf + 8, &24u16.to_le_bytes());
        put(&mut mem, buf + 10, &5u16.to_le_bytes());
        put(&mut mem, buf + 16, b"hello");
        put(&mut mem, 0x1000c, &40u32.to_le_bytes());
        put(&mut mem, 0x10010, &24u32.to_le_bytes());
        // Caller ids where CONFIG_PRINTK_CALLER puts them (read only when exported).
        put(&mut mem, buf + 40 + 12, &(0x8000_0003u32).to_le_bytes());
        put(&mut mem, buf + 12, &42u32.to_le_bytes());
        let mut km = KernelMemory::new(mem, layout(false));
        let records = read_log(&mut km, &info).unwrap();
        let texts: Vec<&[u8]> = records.iter().map(|r| r.text.as_slice()).collect();
        assert_eq!(texts, vec![&b"x"[..], &b"hello"[..]]);
        assert!(records.iter().all(|r| r.caller.is_none()));
        let with_caller = Vmcoreinfo::parse(&[KEYS, b"OFFSET(printk_log.caller_id)=12\n"].concat());
        let records = read_log(&mut km, &with_caller).unwrap();
        let callers: Vec<Option<&str>> = records.iter().map(|r| r.caller.as_deref()).collect();
        assert_eq!(callers, vec![Some("C3"), Some("T42")]);
    }

    #[test]
    fn no_log_keys_is_a_named_error() {
        let mut km = KernelMemory::new(FlatMemory::default(), layout(false));
        let err = read_log(&mut km, &Vmcoreinfo::default()).unwrap_err();
        assert!(err.to_string().contains("SYMBOL(prb)"), "{err}");
    }
}
