//! Saving a dump: the pipeline behind `kdump dump`.
//!
//! One thread reads pages from the source in PFN order and hands batches to
//! N encoder threads; one writer appends the encoded batches strictly in
//! order. Channels are bounded, so memory use is a few batches per thread
//! whatever the size of the dump. A write error (a full disk) stops the
//! pipeline and the file is finished as *incomplete*: readers see every page
//! written so far and know the rest is missing. Unreadable source pages are
//! recorded and left out, not fatal.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod elf;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kdump_dumpfile::{Encoded, KdumpWriter, PageState, PhysMem, WriteAt, WriteSummary};

/// Pages per batch handed to an encoder (1 MiB of 4 KiB pages).
pub const BATCH_PAGES: usize = 256;

/// Pages per batch when one thread reads, compresses and writes: no thread
/// waits for a batch, so a small one costs nothing and keeps the capture
/// kernel's resident set small (256 KiB read, its encoding, then written).
pub const SINGLE_THREAD_BATCH_PAGES: usize = 64;

/// How to save.
#[derive(Debug, Clone)]
pub struct SaveOptions {
    /// Encoder threads. 0 reads, encodes and writes on the calling thread alone:
    /// on a single CPU (a capture kernel with `nr_cpus=1`) a pipeline of
    /// threads only adds switches between them. The output is the same either way.
    pub threads: usize,
    /// Pages the source cannot provide after this many are recorded (not stored).
    pub max_unreadable_listed: usize,
    /// The clock [`StageTimes`] are measured with: monotonic wall time by
    /// default; a caller may pass the thread's CPU time, which stays
    /// meaningful when the stages share one CPU.
    pub clock: fn() -> Duration,
}

impl Default for SaveOptions {
    fn default() -> Self {
        Self { threads: 1, max_unreadable_listed: 1024, clock: wall_clock }
    }
}

/// Monotonic time since the first call.
pub fn wall_clock() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Progress, reported about every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// RAM pages looked at so far.
    pub done: u64,
    /// RAM pages in all.
    pub total: u64,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveReport {
    /// The writer's summary.
    pub written: WriteSummary,
    /// RAM pages looked at.
    pub pages_scanned: u64,
    /// Pages the source lacks (excluded or lost in a dump being re-filtered).
    pub pages_absent: u64,
    /// Pages the source could not read (first ones listed).
    pub unreadable: Vec<u64>,
    /// Count of unreadable pages.
    pub unreadable_count: u64,
    /// Why the dump is incomplete, when it is.
    pub incomplete_reason: Option<String>,
    /// Where the time went.
    pub times: StageTimes,
}

/// Time spent per stage of the pipeline. The stages overlap (they run on
/// different threads), so the sum can exceed the wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// The reader: deciding (`keep`) and reading pages, not waiting for encoders.
    pub reading: Duration,
    /// Bytes of page contents read.
    pub bytes_read: u64,
    /// The encoders, summed over threads.
    pub encoding: Duration,
    /// The writer: appending and finishing the file, not waiting for batches.
    pub writing: Duration,
}

/// A failure that left no usable file.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The dump could not even be started or finished.
    #[error(transparent)]
    Dumpfile(#[from] kdump_dumpfile::Error),
}

/// Pages read in a row, in one buffer (one allocation per batch, not per page).
struct Batch {
    seq: u64,
    pfns: Vec<u64>,
    data: Vec<u8>,
}

/// Encoded pages: (pfn, encoding, start and length in `data`).
struct EncodedBatch {
    seq: u64,
    pages: Vec<(u64, Encoded, usize, usize)>,
    data: Vec<u8>,
}

/// Copies every RAM page of `src` into `writer`, compressing on
/// `opts.threads` threads. `keep(pfn)` decides whether a page is dumped
/// (dump-level filtering) before it is read, so excluded pages cost no I/O;
/// after a write error it is asked about the pages never read, and those it
/// keeps are marked lost. Returns the finished writer's sink and a
/// report; a write error finishes the file as incomplete and reports why.
pub fn save_kdump<M, S, K, P>(
    src: &mut M,
    writer: KdumpWriter<S>,
    opts: &SaveOptions,
    mut keep: K,
    mut progress: P,
) -> Result<(S, SaveReport), SaveError>
where
    M: PhysMem + ?Sized,
    S: WriteAt + Send,
    K: FnMut(u64) -> bool,
    P: FnMut(Progress),
{
    let threads = opts.threads;
    let page_size = src.page_size() as usize;
    let ranges = src.ram_ranges().to_vec();
    let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let mut report = SaveReport::default();
    let stop = AtomicBool::new(false);
    let clock = opts.clock;

    if threads == 0 {
        return save_inline(src, writer, opts, keep, progress, &ranges, page_size, total);
    }

    let encoders: Vec<_> = (0..threads).map(|_| writer.new_encoder()).collect::<Result<_, _>>()?;
    let encode_nanos = AtomicU64::new(0);
    let (batch_tx, batch_rx) = sync_channel::<Batch>(threads * 2);
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let (enc_tx, enc_rx) = sync_channel::<EncodedBatch>(threads * 2);

    let (writer_result, reader_report) = std::thread::scope(|scope| {
        for mut encoder in encoders {
            let rx = Arc::clone(&batch_rx);
            let tx = enc_tx.clone();
            let nanos = &encode_nanos;
            scope.spawn(move || encode_loop(&mut encoder, &rx, &tx, nanos, clock));
        }
        // Only the encoders may hold the receiving end: when they all stop
        // (the writer failed), the reader's next send fails instead of
        // blocking forever on a full channel.
        drop(batch_rx);
        drop(enc_tx);
        let stop_ref = &stop;
        let writer_handle = scope.spawn(move || write_loop(writer, enc_rx, stop_ref, clock));

        // The reader runs here: the source need not be Send.
        let mut send = |batch: Batch| batch_tx.send(batch).is_ok();
        let batch = BATCH_PAGES;
        read_loop(src, &ranges, page_size, batch, total, &mut send, &stop, &mut keep, &mut progress, &mut report, opts);
        drop(batch_tx);
        (writer_handle.join(), std::mem::take(&mut report))
    });
    let mut report = reader_report;
    let (written, mut writing) = match writer_result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let finishing = clock();
    let (sink, summary, reason) = match written {
        // The last buffered pages are written here: a full disk now still leaves an incomplete file.
        Written::Finished(writer) => writer.finish_or_incomplete(&mut keep)?,
        // The pages never read that the filter would have kept are marked lost.
        Written::Failed(writer, reason) => {
            let (sink, summary) = writer.finish_incomplete_with(&mut keep)?;
            (sink, summary, Some(reason))
        }
    };
    writing += clock().saturating_sub(finishing);
    report.written = summary;
    report.incomplete_reason = reason;
    report.times.encoding = Duration::from_nanos(encode_nanos.load(Ordering::Relaxed));
    report.times.writing = writing;
    Ok((sink, report))
}

#[allow(clippy::too_many_arguments)]
fn read_loop<M, K, P>(
    src: &mut M,
    ranges: &[kdump_dumpfile::PfnRange],
    page_size: usize,
    batch_pages: usize,
    total: u64,
    deliver: &mut dyn FnMut(Batch) -> bool,
    stop: &AtomicBool,
    keep: &mut K,
    progress: &mut P,
    report: &mut SaveReport,
    opts: &SaveOptions,
) where
    M: PhysMem + ?Sized,
    K: FnMut(u64) -> bool,
    P: FnMut(Progress),
{
    let clock = opts.clock;
    let started = clock();
    let mut waiting = Duration::ZERO;
    let mut seq = 0;
    let new_batch = || (Vec::with_capacity(batch_pages), Vec::with_capacity(batch_pages * page_size));
    let (mut pfns, mut data): (Vec<u64>, Vec<u8>) = new_batch();
    let mut done = 0u64;
    for range in ranges {
        for pfn in range.clone() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            done += 1;
            report.pages_scanned = done;
            if !keep(pfn) {
                continue;
            }
            let at = data.len();
            data.resize(at + page_size, 0);
            let page = &mut data[at..];
            match src.read_page(pfn, page) {
                Ok(PageState::Present | PageState::ZeroFilled) => {
                    pfns.push(pfn);
                    report.times.bytes_read += page_size as u64;
                }
                Ok(_) => {
                    report.pages_absent += 1;
                    data.truncate(at);
                }
                Err(_) => {
                    report.unreadable_count += 1;
                    if report.unreadable.len() < opts.max_unreadable_listed {
                        report.unreadable.push(pfn);
                    }
                    data.truncate(at);
                }
            }
            if pfns.len() == batch_pages {
                let (next_pfns, next_data) = new_batch();
                let batch = Batch {
                    seq,
                    pfns: std::mem::replace(&mut pfns, next_pfns),
                    data: std::mem::replace(&mut data, next_data),
                };
                let sending = clock();
                let sent = deliver(batch);
                waiting += clock().saturating_sub(sending);
                if !sent {
                    report.times.reading = clock().saturating_sub(started).saturating_sub(waiting);
                    return;
                }
                seq += 1;
                progress(Progress { done, total });
            }
        }
    }
    report.times.reading = clock().saturating_sub(started).saturating_sub(waiting);
    if !pfns.is_empty() {
        deliver(Batch { seq, pfns, data });
    }
    report.pages_scanned = done;
    progress(Progress { done, total });
}

fn encode_loop(
    encoder: &mut kdump_dumpfile::PageEncoder,
    rx: &Mutex<Receiver<Batch>>,
    tx: &SyncSender<EncodedBatch>,
    nanos: &AtomicU64,
    clock: fn() -> Duration,
) {
    loop {
        let batch = match rx.lock() {
            Ok(guard) => match guard.recv() {
                Ok(b) => b,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let started = clock();
        let encoded = encode_batch(encoder, batch);
        nanos.fetch_add(clock().saturating_sub(started).as_nanos() as u64, Ordering::Relaxed);
        if tx.send(encoded).is_err() {
            return;
        }
    }
}

fn encode_batch(encoder: &mut kdump_dumpfile::PageEncoder, batch: Batch) -> EncodedBatch {
    let page_size = if batch.pfns.is_empty() { 0 } else { batch.data.len() / batch.pfns.len() };
    let mut pages = Vec::with_capacity(batch.pfns.len());
    let mut data = Vec::with_capacity(batch.data.len());
    let mut scratch = Vec::new();
    for (&pfn, page) in batch.pfns.iter().zip(batch.data.chunks_exact(page_size.max(1))) {
        let at = data.len();
        // Encoding cannot fail for a page-sized buffer; keep the page raw if it does.
        let enc = encoder.encode(page, &mut scratch).unwrap_or(Encoded::Raw);
        match enc {
            Encoded::Zero => {}
            Encoded::Raw => data.extend_from_slice(page),
            Encoded::Compressed { .. } => data.extend_from_slice(&scratch),
        }
        pages.push((pfn, enc, at, data.len() - at));
    }
    EncodedBatch { seq: batch.seq, pages, data }
}

/// Appends one encoded batch; the error text on failure.
fn write_batch<S: WriteAt>(writer: &mut KdumpWriter<S>, batch: &EncodedBatch) -> Result<(), String> {
    for &(pfn, enc, at, len) in &batch.pages {
        writer.append_encoded(pfn, enc, &batch.data[at..at + len]).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// [`save_kdump`] with `threads == 0`: read, encode and write in turn on this thread.
#[allow(clippy::too_many_arguments)]
fn save_inline<M, S, K, P>(
    src: &mut M,
    mut writer: KdumpWriter<S>,
    opts: &SaveOptions,
    mut keep: K,
    mut progress: P,
    ranges: &[kdump_dumpfile::PfnRange],
    page_size: usize,
    total: u64,
) -> Result<(S, SaveReport), SaveError>
where
    M: PhysMem + ?Sized,
    S: WriteAt,
    K: FnMut(u64) -> bool,
    P: FnMut(Progress),
{
    let clock = opts.clock;
    let mut encoder = writer.new_encoder()?;
    let stop = AtomicBool::new(false);
    let mut report = SaveReport::default();
    let (mut encoding, mut writing) = (Duration::ZERO, Duration::ZERO);
    let mut failure: Option<String> = None;
    let mut deliver = |batch: Batch| {
        let t0 = clock();
        let encoded = encode_batch(&mut encoder, batch);
        let t1 = clock();
        let written = write_batch(&mut writer, &encoded);
        writing += clock().saturating_sub(t1);
        encoding += t1.saturating_sub(t0);
        match written {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                stop.store(true, Ordering::Relaxed);
                false
            }
        }
    };
    let batch = SINGLE_THREAD_BATCH_PAGES;
    read_loop(src, ranges, page_size, batch, total, &mut deliver, &stop, &mut keep, &mut progress, &mut report, opts);
    let t = clock();
    let (sink, summary) = match &failure {
        None => {
            let (sink, summary, late) = writer.finish_or_incomplete(&mut keep)?;
            failure = late;
            (sink, summary)
        }
        // The pages never read that the filter would have kept are marked lost.
        Some(_) => writer.finish_incomplete_with(&mut keep)?,
    };
    writing += clock().saturating_sub(t);
    report.written = summary;
    report.incomplete_reason = failure;
    // The reader's time excludes `deliver`, which encoded and wrote.
    report.times.encoding = encoding;
    report.times.writing = writing;
    Ok((sink, report))
}

/// The writer after the last batch: ready to finish, or stopped by a write error.
enum Written<S: WriteAt> {
    Finished(KdumpWriter<S>),
    Failed(KdumpWriter<S>, String),
}

/// The writer's loop; returns it with the time it spent writing (not waiting).
fn write_loop<S: WriteAt>(
    mut writer: KdumpWriter<S>,
    rx: Receiver<EncodedBatch>,
    stop: &AtomicBool,
    clock: fn() -> Duration,
) -> (Written<S>, Duration) {
    let mut busy = Duration::ZERO;
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, EncodedBatch> = BTreeMap::new();
    let mut failure: Option<String> = None;
    'recv: for batch in rx.iter() {
        let started = clock();
        waiting.insert(batch.seq, batch);
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            if let Err(e) = write_batch(&mut writer, &batch) {
                failure = Some(e);
                stop.store(true, Ordering::Relaxed);
                break 'recv;
            }
        }
        busy += clock().saturating_sub(started);
    }
    // Dropping the receiver lets the encoders, then the reader, stop.
    drop(rx);
    let written = match failure {
        None => Written::Finished(writer),
        Some(reason) => Written::Failed(writer, reason),
    };
    (written, busy)
}
