use kdump_dumpfile::PhysMem;

/// Reads a bounded number of pages: the first pages and the RAM range edges.
pub fn exercise<M: PhysMem>(m: &mut M) {
    let mut buf = vec![0u8; m.page_size() as usize];
    for pfn in 0..m.max_pfn().min(64) {
        let _ = m.read_page(pfn, &mut buf);
    }
    let edges: Vec<u64> =
        m.ram_ranges().iter().take(64).flat_map(|r| [r.start, r.end.saturating_sub(1), r.end]).collect();
    for pfn in edges {
        let _ = m.read_page(pfn, &mut buf);
    }
    let _ = m.read_page(u64::MAX, &mut buf);
    if let Some(v) = m.vmcoreinfo() {
        let _ = v.len();
    }
    for n in kdump_dumpfile::notes::parse_notes(m.notes(), true).take(1000) {
        let _ = n;
    }
}
