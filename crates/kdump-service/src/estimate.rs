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
    /// What the targets need while the dump goes out (the largest, as one target is used at a time).
    pub sink: SinkMemory,
}

/// The memory a target's sink holds during the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMemory {
    /// A local file or raw device: the page cache, which the kernel reclaims.
    Disk,
    /// SFTP writes in flight.
    Ssh,
    /// S3 multipart part buffers (for a dump of at most the RAM's size) and the TLS/HTTP client.
    S3,
}

impl SinkMemory {
    /// Its bytes and how they are counted, for a machine of `ram` bytes.
    fn term(self, ram: u64) -> (u64, String) {
        match self {
            SinkMemory::Disk => (0, "a local disk: the page cache, reclaimable".into()),
            SinkMemory::Ssh => (kdump_ssh::PIPELINE_BYTES, "ssh: SFTP writes in flight".into()),
            SinkMemory::S3 => {
                let parts = kdump_s3::MultipartConfig::for_estimated_size(ram);
                (
                    parts.memory_bound() + S3_CLIENT,
                    format!(
                        "S3: ({} open + {} uploading) parts x {} + the https client",
                        parts.max_open_parts,
                        parts.parts_in_flight,
                        mib(parts.part_size)
                    ),
                )
            }
        }
    }
}

/// The S3 client besides its part buffers: TLS state, connections, request buffers.
const S3_CLIENT: u64 = 2 << 20;

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
            what: "page bitmap",
            how: format!("{} pages / 8 (the dump-level filter's kept pages; the writer keeps none)", i.max_pfn),
            bytes: bitmap,
        },
        Term {
            what: "writer buffers",
            how: "page data and descriptors before a flush".into(),
            bytes: kdump_dumpfile::WRITER_BUFFER_BYTES,
        },
        {
            let (bytes, how) = i.sink.term(i.max_pfn * i.page_size);
            Term { what: "target", how, bytes }
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
            sink: SinkMemory::Disk,
        });
        assert_eq!(e.terms[2].bytes, 1 << 15, "one bit per page, once");
        assert_eq!(e.terms[3].bytes, kdump_dumpfile::WRITER_BUFFER_BYTES);
        assert_eq!(e.terms[4].bytes, 0);
        assert_eq!(e.terms[5].bytes, 7 * (1 << 20) * 2);
        let writer = kdump_dumpfile::WRITER_BUFFER_BYTES;
        assert_eq!(e.total, (30 << 20) + (10 << 20) + (1 << 15) + writer + (14 << 20) + (64 << 20) + (1 << 20));
        assert_eq!(e.crashkernel_mib, 128);
        assert!(e.render().contains("crashkernel=128M"));
        // 1 TiB: 32 MiB of bitmap, not 64.
        let big = EstimateInput { max_pfn: 1 << 28, ..EstimateInput::clone(&input(SinkMemory::Disk)) };
        assert_eq!(estimate(&big).terms[2].bytes, 32 << 20);
        // An S3 target at 1 GiB: 5 MiB parts, 6 open and 2 uploading, plus the client.
        let s3 = estimate(&input(SinkMemory::S3));
        assert_eq!(s3.terms[4].bytes, 8 * (5 << 20) + (2 << 20));
        assert!(s3.render().contains("S3: (6 open + 2 uploading) parts x 5.0 MiB"), "{}", s3.render());
        assert_eq!(s3.total - e.total, 42 << 20);
        assert_eq!(estimate(&input(SinkMemory::Ssh)).terms[4].bytes, 2 << 20);
    }

    fn input(sink: SinkMemory) -> EstimateInput {
        EstimateInput {
            kernel_init_size: 30 << 20,
            initramfs_len: 5 << 20,
            max_pfn: 1 << 18,
            page_size: 4096,
            threads: 1,
            sink,
        }
    }
}
