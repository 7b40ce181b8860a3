//! Writes small valid inputs for the fuzz targets (scripts/fuzz.sh runs this):
//! without them a dump-file target spends its time on the magic check and
//! never reaches the headers, bitmaps, page descriptors and codecs.
//!
//!   cargo run -p kdump-dumpfile --example fuzz_seeds -- DIR
//!
//! Makes DIR/dump_kdump, DIR/dump_flat, DIR/dump_elf and DIR/kernel_memory.

use std::io::Cursor;
use std::path::Path;

use kdump_dumpfile::elf::{EM_X86_64, write_elf64_vmcore};
use kdump_dumpfile::kdump::KdumpConfig;
use kdump_dumpfile::notes::push_note;
use kdump_dumpfile::{Codec, FlatWriter, KdumpWriter, SeekSink};

/// Small pages keep the seeds within the fuzzers' input limit (64 KiB).
const PAGE: u32 = 512;
/// Two RAM ranges with a hole, so range and bitmap logic is exercised.
const RANGES: [(u64, u64); 2] = [(0, 6), (9, 14)];

/// VMCOREINFO with the keys the kernel decoders look up first.
const VMCOREINFO: &str = "OSRELEASE=6.1.0-fuzz\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff82a13e20\n\
SYMBOL(swapper_pg_dir)=ffffffff82a0a000\nSYMBOL(_stext)=ffffffff81000000\nSYMBOL(prb)=ffffffff82a5a7e0\n\
SYMBOL(mem_section)=ffff888007ffa000\nLENGTH(mem_section)=1024\nSIZE(mem_section)=16\n\
OFFSET(mem_section.section_mem_map)=0\nNUMBER(SECTION_SIZE_BITS)=27\nNUMBER(MAX_PHYSMEM_BITS)=46\n\
SIZE(page)=64\nOFFSET(page.flags)=0\nOFFSET(page._refcount)=52\nOFFSET(page.mapping)=24\n\
OFFSET(page.lru)=8\nOFFSET(page._mapcount)=48\nOFFSET(page.private)=40\nOFFSET(page.compound_head)=8\n\
NUMBER(PG_lru)=4\nNUMBER(PG_private)=13\nNUMBER(PG_swapcache)=10\nNUMBER(PG_swapbacked)=19\n\
NUMBER(PG_slab)=9\nNUMBER(PG_head_mask)=65536\nNUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n\
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257\nLENGTH(zone.free_area)=11\nSIZE(printk_ringbuffer)=80\n\
OFFSET(printk_ringbuffer.desc_ring)=0\nOFFSET(printk_ringbuffer.text_data_ring)=48\n\
OFFSET(prb_desc_ring.count_bits)=0\nOFFSET(prb_desc_ring.descs)=8\nOFFSET(prb_desc_ring.infos)=16\n\
OFFSET(prb_desc_ring.head_id)=24\nOFFSET(prb_desc_ring.tail_id)=32\nSIZE(prb_desc)=24\n\
OFFSET(prb_desc.state_var)=0\nOFFSET(prb_desc.text_blk_lpos)=8\nOFFSET(prb_data_blk_lpos.begin)=0\n\
OFFSET(prb_data_blk_lpos.next)=8\nSIZE(printk_info)=88\nOFFSET(printk_info.seq)=0\n\
OFFSET(printk_info.ts_nsec)=8\nOFFSET(printk_info.text_len)=16\nOFFSET(printk_info.caller_id)=20\n\
OFFSET(prb_data_ring.size_bits)=0\nOFFSET(prb_data_ring.data)=8\nOFFSET(atomic_long_t.counter)=0\n\
SYMBOL(kallsyms_names)=ffffffff82000000\nSYMBOL(kallsyms_num_syms)=ffffffff81fff000\n\
SYMBOL(kallsyms_token_table)=ffffffff82100000\nSYMBOL(kallsyms_token_index)=ffffffff82101000\n\
SYMBOL(kallsyms_offsets)=ffffffff81f00000\nSYMBOL(kallsyms_relative_base)=ffffffff81efff00\n\
NUMBER(phys_base)=0\nKERNELOFFSET=0\nNUMBER(pgtable_l5_enabled)=0\nCRASHTIME=1764547200\n";

fn page(pfn: u64) -> Vec<u8> {
    match pfn % 4 {
        0 => vec![0; PAGE as usize],
        1 => (0..PAGE).map(|i| (i / 8) as u8).collect(),
        2 => (0..PAGE).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
        _ => b"kdump fuzz seed ".iter().copied().cycle().take(PAGE as usize).collect(),
    }
}

fn notes() -> Vec<u8> {
    let mut notes = Vec::new();
    // NT_PRSTATUS of two CPUs (336 bytes on x86_64), then VMCOREINFO.
    for cpu in 0..2u8 {
        let mut prstatus = vec![0u8; 336];
        prstatus[32] = cpu + 1; // pr_pid
        notes.resize(notes.len().next_multiple_of(4), 0);
        push_note(&mut notes, b"CORE", 1, &prstatus);
    }
    notes.resize(notes.len().next_multiple_of(4), 0);
    push_note(&mut notes, b"VMCOREINFO", 0, VMCOREINFO.as_bytes());
    notes
}

fn config(codec: Codec, share_zero: bool) -> KdumpConfig {
    let ranges = RANGES.iter().map(|&(s, e)| s..e).collect();
    let mut c = KdumpConfig::new(PAGE, RANGES[1].1 + 2, ranges, codec);
    c.share_zero_pages = share_zero;
    c.vmcoreinfo = Some(VMCOREINFO.as_bytes().to_vec());
    c.notes = notes();
    c.dump_level = if share_zero { 31 } else { 0 };
    c
}

fn fill<S: kdump_dumpfile::WriteAt>(w: &mut KdumpWriter<S>) -> kdump_dumpfile::Result<()> {
    for &(start, end) in &RANGES {
        for pfn in start..end {
            // Leave one page out, as a dump level does.
            if pfn != 10 {
                w.append_page(pfn, &page(pfn))?;
            }
        }
    }
    Ok(())
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: fuzz_seeds DIR")?;
    let dir = Path::new(&dir);
    for codec in Codec::ALL {
        for share_zero in [false, true] {
            let name = format!("{codec:?}-{}", if share_zero { "shared-zero" } else { "plain" }).to_lowercase();
            let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), config(codec, share_zero))?;
            fill(&mut w)?;
            let file = w.finish()?.0.into_inner().into_inner();
            write(dir, "dump_kdump", &name, &file)?;
            let mut w = KdumpWriter::new(FlatWriter::new(Vec::new())?, config(codec, share_zero))?;
            fill(&mut w)?;
            write(dir, "dump_flat", &name, &w.finish()?.0.finish()?)?;
            // An incomplete one too: readers take another path for it.
            let mut w = KdumpWriter::new(SeekSink::new(Cursor::new(Vec::new())), config(codec, share_zero))?;
            w.append_page(0, &page(0))?;
            let file = w.finish_incomplete()?.0.into_inner().into_inner();
            write(dir, "dump_kdump", &format!("{name}-incomplete"), &file)?;
        }
    }

    let ps = 4096u64;
    let segments: Vec<(u64, Vec<u8>)> =
        vec![(0, vec![0x11; 2 * ps as usize]), (5 * ps, (0..ps).map(|i| i as u8).collect())];
    let segs: Vec<(u64, u64, &[u8])> = segments.iter().map(|(at, b)| (*at, b.len() as u64, b.as_slice())).collect();
    let mut elf = Vec::new();
    write_elf64_vmcore(&mut elf, EM_X86_64, &notes(), &segs)?;
    write(dir, "dump_elf", "two-segments", &elf)?;

    // kernel_memory: u16 length, VMCOREINFO text, then physical memory from address 0.
    let mut input = (VMCOREINFO.len() as u16).to_le_bytes().to_vec();
    input.extend_from_slice(VMCOREINFO.as_bytes());
    input.extend((0..16 * 1024u32).map(|i| (i % 251) as u8));
    write(dir, "kernel_memory", "vmcoreinfo-and-memory", &input)?;
    Ok(())
}
