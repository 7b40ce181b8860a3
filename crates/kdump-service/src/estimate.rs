//! `kdump estimate`: the `crashkernel=` size this machine needs, with the arithmetic.

/// Pages a batch of the save pipeline holds (kdump-save's `BATCH_PAGES`).
pub const BATCH_PAGES: u64 = 256;
/// The capture kernel's own run-time memory with nr_cpus=1 (page tables, slab,
/// per-CPU areas, the drivers of a small machine): measured at about 40-50 MiB on
/// Debian's cloud kernel; 64 MiB leaves room.
pub const KERNEL_RUNTIME: u64 = 64 << 20;
/// kexec's own pages in the crash region: purgatory, boot parameters, ELF core headers.
pub const LOAD_OVERHEAD: u64 = 1 << 20;

/// What the estimate is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstimateInput {
    /// The capture kernel's `init_size` (bzImage header).
    pub kernel_init_size: u64,
    /// The capture initramfs size.
    pub initramfs_len: u64,
    /// Highest page frame number of this machine's RAM + 1.
    pub max_pfn: u64,
    /// Page size.
    pub page_size: u64,
    /// Encoder threads.
    pub threads: u64,
}

/// One term of the sum.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Term {
    /// What it is.
    pub what: &'static str,
    /// How it is computed.
    pub how: String,
    /// Bytes.
    pub bytes: u64,
}

/// The estimate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// The terms.
    pub terms: Vec<Term>,
    /// Their sum.
    pub total: u64,
    /// `crashkernel=` to use, in MiB (the total rounded up to 32 MiB).
    pub crashkernel_mib: u64,
}

fn mib(b: u64) -> String {
    if b < 1 << 20 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

fn page_up(b: u64) -> u64 {
    b.div_ceil(4096) * 4096
}

/// Computes the estimate.
pub fn estimate(i: &EstimateInput) -> Estimate {
    let bitmap = i.max_pfn.div_ceil(8);
    let batch = BATCH_PAGES * i.page_size;
    let in_flight = 5 * i.threads + 2;
    let terms = vec![
        Term {
            what: "capture kernel",
            how: format!("init_size {} rounded to pages", mib(i.kernel_init_size)),
            bytes: page_up(i.kernel_init_size),
        },
        Term {
            what: "initramfs",
            how: format!("2 x {} (the image, and its files unpacked in rootfs)", mib(i.initramfs_len)),
            bytes: 2 * page_up(i.initramfs_len),
        },
        Term {
            what: "page bitmaps",
            how: format!("2 x {} pages / 8 (dump-level filter and writer bitmaps)", i.max_pfn),
            bytes: 2 * bitmap,
        },
        Term {
            what: "codec buffers",
            how: format!(
                "(5 x {} threads + 2) batches in flight x {} pages x {} B x 2 (raw + encoded)",
                i.threads, BATCH_PAGES, i.page_size
            ),
            bytes: in_flight * batch * 2,
        },
        Term { what: "kernel run time", how: "nr_cpus=1: page tables, slab, drivers".into(), bytes: KERNEL_RUNTIME },
        Term { what: "kexec overhead", how: "purgatory, boot parameters, ELF headers".into(), bytes: LOAD_OVERHEAD },
    ];
    let total = terms.iter().map(|t| t.bytes).sum::<u64>();
    let crashkernel_mib = total.div_ceil(32 << 20) * 32;
    Estimate { terms, total, crashkernel_mib }
}

impl Estimate {
    /// The arithmetic, one term a line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for t in &self.terms {
            s.push_str(&format!("  {:<16} {:>10}   {}\n", t.what, mib(t.bytes), t.how));
        }
        s.push_str(&format!("  {:<16} {:>10}\n", "total", mib(self.total)));
        s.push_str(&format!("crashkernel={}M (the total rounded up to 32 MiB)\n", self.crashkernel_mib));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_rounds() {
        let e = estimate(&EstimateInput {
            kernel_init_size: 30 << 20,
            initramfs_len: 5 << 20,
            max_pfn: 1 << 18, // 1 GiB
            page_size: 4096,
            threads: 1,
        });
        assert_eq!(e.terms[2].bytes, 2 * (1 << 15));
        assert_eq!(e.terms[3].bytes, 7 * (1 << 20) * 2);
        assert_eq!(e.total, (30 << 20) + (10 << 20) + (1 << 16) + (14 << 20) + (64 << 20) + (1 << 20));
        assert_eq!(e.crashkernel_mib, 128);
        assert!(e.render().contains("crashkernel=128M"));
    }
}
