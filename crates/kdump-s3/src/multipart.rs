//! A kdump-compressed dump uploaded while it is written: [`MultipartSink`] implements
//! [`WriteAt`] over an S3 multipart upload.
//!
//! The object is cut into parts on a fixed grid of `part_size` bytes (part *n* holds bytes
//! `[(n-1)·size, n·size)`). The kdump writer (with `data_alignment = part_size`) writes its
//! metadata (headers, bitmaps, page descriptors) below the first multiple of the part size and
//! appends page data after it, so
//! - data parts fill in order and leave as soon as they are full, a bounded number in flight;
//! - a metadata part leaves once every byte of it has been written (bitmap and descriptor
//!   blocks are each written once, in order);
//! - part 1, whose header block the writer rewrites when it finishes, is uploaded last, with
//!   the last data part and any part still holding never-written bytes (zeros, as in a local
//!   file), at [`complete`](MultipartSink::complete). Parts may be uploaded in any order.
//!
//! Memory: at most `max_open_parts` parts being filled plus `parts_in_flight` being
//! uploaded, each `part_size` bytes ([`MultipartConfig::memory_bound`]). For the kdump
//! writer at most 5 parts are open at once (part 1, the 2nd bitmap's frontier, the part where
//! the 2nd bitmap meets the descriptors, the descriptors' frontier, the data frontier).
//!
//! Failure: each part is retried with backoff ([`RetryPolicy`]); when one still fails, every
//! later write returns an error, and [`abort`](MultipartSink::abort) (or dropping the sink)
//! aborts the upload, so an incomplete dump never appears as an object. Give the writer
//! `&mut sink`, so that after any error (the sink's or the writer's own) the caller drops the
//! writer and still holds the sink to abort with the reason: a dump that could not be
//! finished is not completed, not even marked incomplete in its header. `<key>.incomplete` is
//! written before the upload starts (holding the reason after an abort) and deleted only after
//! the upload completed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kdump_dumpfile::WriteAt;

use crate::client::{Client, RetryPolicy};
use crate::error::{Result, S3Error};

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's most parts in one upload.
pub const MAX_PARTS: u32 = 10_000;

/// Part size and concurrency of a [`MultipartSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartConfig {
    /// Bytes per part (the last may be shorter): `MIN_PART_SIZE..=MAX_PART_SIZE`.
    pub part_size: u64,
    /// Parts queued or being uploaded at once (the uploading threads).
    pub parts_in_flight: usize,
    /// Parts being filled at once; one more is an error, not more memory.
    pub max_open_parts: usize,
    /// Retries of each request.
    pub retry: RetryPolicy,
}

impl MultipartConfig {
    /// The smallest MiB-multiple part size that fits `estimate` bytes in 9,000 parts (room
    /// for the estimate to be 10% low), at least 5 MiB; two uploads in flight, six open parts.
    pub fn for_estimated_size(estimate: u64) -> Self {
        let part = estimate.div_ceil(9_000).next_multiple_of(1 << 20).clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        MultipartConfig { part_size: part, parts_in_flight: 2, max_open_parts: 6, retry: RetryPolicy::default() }
    }

    /// The most bytes of part buffers the sink holds.
    pub fn memory_bound(&self) -> u64 {
        self.part_size * (self.max_open_parts + self.parts_in_flight) as u64
    }

    fn check(&self) -> Result<()> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(S3Error::Config(format!(
                "part size {} must be between 5 MiB and 5 GiB (S3's limits)",
                self.part_size
            )));
        }
        if self.parts_in_flight == 0 || self.max_open_parts < 2 {
            return Err(S3Error::Config("at least one part in flight and two open parts".into()));
        }
        Ok(())
    }
}

/// Upload progress, readable from another thread.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    parts: AtomicU64,
}

impl Progress {
    /// Bytes of parts uploaded so far.
    pub fn bytes_uploaded(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Parts uploaded so far.
    pub fn parts_uploaded(&self) -> u64 {
        self.parts.load(Ordering::Relaxed)
    }
}

/// What [`MultipartSink::complete`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// Object size.
    pub size: u64,
    /// Parts it was uploaded in.
    pub parts: u32,
    /// Whether `<key>.incomplete` could be removed afterwards (else it is stale).
    pub marker_removed: bool,
    /// Part buffers allocated in all (each `part_size` bytes; at most
    /// `max_open_parts + parts_in_flight`).
    pub buffers_allocated: usize,
}

/// What [`MultipartSink::abort`] managed.
#[derive(Debug)]
pub struct Aborted {
    /// The abort request's outcome (an upload left behind is removed by the bucket's
    /// lifecycle rule for incomplete uploads, if any).
    pub upload_aborted: Result<()>,
    /// Writing the reason into `<key>.incomplete`.
    pub marker_written: Result<()>,
}

/// A part being filled: its buffer and the byte ranges written so far.
#[derive(Debug)]
struct OpenPart {
    buf: Vec<u8>,
    /// Sorted, disjoint, non-adjacent `[start, end)` ranges within the part.
    covered: Vec<(u64, u64)>,
}

impl OpenPart {
    fn cover(&mut self, s: u64, e: u64) {
        let i = self.covered.partition_point(|&(_, ce)| ce < s);
        let mut j = i;
        let (mut ns, mut ne) = (s, e);
        while j < self.covered.len() && self.covered[j].0 <= ne {
            ns = ns.min(self.covered[j].0);
            ne = ne.max(self.covered[j].1);
            j += 1;
        }
        self.covered.splice(i..j, [(ns, ne)]);
    }

    fn is_full(&self, size: u64) -> bool {
        self.covered.first() == Some(&(0, size))
    }
}

struct Job {
    index: u64,
    buf: Vec<u8>,
    len: usize,
}

struct Done {
    index: u64,
    buf: Vec<u8>,
    len: usize,
    etag: Result<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Open,
    Completed,
    Aborted,
}

/// [`WriteAt`] into an S3 multipart upload; see the [module docs](self).
pub struct MultipartSink {
    client: Client,
    key: String,
    upload_id: String,
    cfg: MultipartConfig,
    open: BTreeMap<u64, OpenPart>,
    submitted: BTreeSet<u64>,
    etags: BTreeMap<u32, String>,
    end: u64,
    in_flight: usize,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    pool: Vec<Vec<u8>>,
    allocated: usize,
    failure: Option<S3Error>,
    progress: Arc<Progress>,
    state: State,
}

impl std::fmt::Debug for MultipartSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartSink")
            .field("key", &self.key)
            .field("upload_id", &self.upload_id)
            .field("cfg", &self.cfg)
            .field("open", &self.open.len())
            .field("in_flight", &self.in_flight)
            .field("end", &self.end)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The key of the marker that says an object's upload has not finished.
pub fn marker_key(key: &str) -> String {
    format!("{key}.incomplete")
}

impl MultipartSink {
    /// Writes `<key>.incomplete`, starts the multipart upload of `key` and the uploading
    /// threads.
    pub fn start(client: Client, key: &str, cfg: MultipartConfig) -> Result<Self> {
        cfg.check()?;
        let marker = format!(
            "the upload of {key} started and has not finished; if this object stays, the upload failed \
             (see kdump.log next to it)\n"
        );
        cfg.retry.run(|| client.put_object(&marker_key(key), marker.as_bytes()))?;
        let upload_id = cfg.retry.run(|| client.create_multipart_upload(key))?;
        let (job_tx, job_rx) = sync_channel::<Job>(0);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = channel::<Done>();
        let mut workers = Vec::new();
        for _ in 0..cfg.parts_in_flight {
            let (client, key, upload_id, rx, tx) =
                (client.clone(), key.to_string(), upload_id.clone(), Arc::clone(&job_rx), done_tx.clone());
            let retry = cfg.retry;
            workers.push(std::thread::spawn(move || {
                loop {
                    // The lock is held only while waiting for a job.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let part_number = (job.index + 1) as u32;
                    let etag = retry.run(|| client.upload_part(&key, &upload_id, part_number, &job.buf[..job.len]));
                    if tx.send(Done { index: job.index, buf: job.buf, len: job.len, etag }).is_err() {
                        return;
                    }
                }
            }));
        }
        Ok(MultipartSink {
            client,
            key: key.to_string(),
            upload_id,
            cfg,
            open: BTreeMap::new(),
            submitted: BTreeSet::new(),
            etags: BTreeMap::new(),
            end: 0,
            in_flight: 0,
            jobs: Some(job_tx),
            done: done_rx,
            workers,
            pool: Vec::new(),
            allocated: 0,
            failure: None,
            progress: Arc::new(Progress::default()),
            state: State::Open,
        })
    }

    /// The object key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The server's id of this upload.
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Counters of what has been uploaded, for a progress line.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// The first failure, if any (after it every write fails).
    pub fn failure(&self) -> Option<&S3Error> {
        self.failure.as_ref()
    }

    fn fail(&mut self, e: S3Error) {
        if self.failure.is_none() {
            self.failure = Some(e);
        }
    }

    fn io_error(&self) -> io::Error {
        match &self.failure {
            Some(e) => io::Error::other(format!("upload to S3 failed: {e}")),
            None => io::Error::other("the S3 upload is no longer open"),
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        match self.pool.pop() {
            Some(mut b) => {
                b.fill(0);
                b
            }
            None => {
                self.allocated += 1;
                vec![0u8; self.cfg.part_size as usize]
            }
        }
    }

    fn finished(&mut self, d: Done) {
        self.in_flight -= 1;
        match d.etag {
            Ok(etag) => {
                self.etags.insert((d.index + 1) as u32, etag);
                self.progress.bytes.fetch_add(d.len as u64, Ordering::Relaxed);
                self.progress.parts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(e),
        }
        self.pool.push(d.buf);
    }

    fn wait_one(&mut self) {
        match self.done.recv() {
            Ok(d) => self.finished(d),
            Err(_) => {
                self.in_flight = 0;
                self.fail(S3Error::Sink("the uploading threads stopped".into()));
            }
        }
    }

    fn poll(&mut self) {
        while let Ok(d) = self.done.try_recv() {
            self.finished(d);
        }
    }

    fn submit(&mut self, index: u64, buf: Vec<u8>, len: usize) {
        while self.in_flight >= self.cfg.parts_in_flight {
            self.wait_one();
        }
        self.submitted.insert(index);
        let sent = self.jobs.as_ref().map(|j| j.send(Job { index, buf, len }));
        match sent {
            Some(Ok(())) => self.in_flight += 1,
            _ => self.fail(S3Error::Sink("the uploading threads stopped".into())),
        }
    }

    fn write_piece(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let size = self.cfg.part_size;
        let (index, within) = (offset / size, offset % size);
        if index >= u64::from(MAX_PARTS) {
            return Err(S3Error::TooManyParts { max: MAX_PARTS, part_size: size });
        }
        if self.submitted.contains(&index) {
            return Err(S3Error::Sink(format!(
                "bytes at offset {offset} written again after part {} was uploaded",
                index + 1
            )));
        }
        if !self.open.contains_key(&index) {
            if self.open.len() >= self.cfg.max_open_parts {
                return Err(S3Error::Sink(format!(
                    "more than {} parts written at once (offset {offset}); this write pattern needs more memory",
                    self.cfg.max_open_parts
                )));
            }
            let buf = self.take_buffer();
            self.open.insert(index, OpenPart { buf, covered: Vec::new() });
        }
        let Some(part) = self.open.get_mut(&index) else {
            return Err(S3Error::Sink("internal: part vanished".into()));
        };
        part.buf[within as usize..within as usize + data.len()].copy_from_slice(data);
        part.cover(within, within + data.len() as u64);
        // Part 1 waits for the writer's final header.
        if index != 0
            && part.is_full(size)
            && let Some(p) = self.open.remove(&index)
        {
            self.submit(index, p.buf, size as usize);
        }
        Ok(())
    }

    /// Uploads what is left (part 1 last), completes the upload, then removes the marker.
    /// On failure the upload is aborted and the marker says why.
    pub fn complete(mut self) -> Result<Completed> {
        match self.complete_inner() {
            Ok(c) => Ok(c),
            Err(e) => {
                let reason = e.to_string();
                let _ = self.abort_inner(&reason);
                Err(e)
            }
        }
    }

    fn complete_inner(&mut self) -> Result<Completed> {
        self.poll();
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if self.state != State::Open {
            return Err(S3Error::Sink("complete() after abort".into()));
        }
        if self.end == 0 {
            return Err(S3Error::Sink("nothing was written".into()));
        }
        let size = self.cfg.part_size;
        let last = (self.end - 1) / size;
        let end = self.end;
        let len_of = move |i: u64| if i == last { (end - i * size) as usize } else { size as usize };
        for index in (1..=last).chain([0]) {
            if self.submitted.contains(&index) {
                continue;
            }
            let buf = match self.open.remove(&index) {
                Some(p) => p.buf,
                None => self.take_buffer(), // never written: zeros, as a local file reads
            };
            self.submit(index, buf, len_of(index));
        }
        while self.in_flight > 0 {
            self.wait_one();
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let parts: Vec<(u32, String)> = self.etags.iter().map(|(&n, e)| (n, e.clone())).collect();
        if parts.len() as u64 != last + 1 {
            return Err(S3Error::Sink(format!("{} of {} parts uploaded", parts.len(), last + 1)));
        }
        self.cfg.retry.run(|| self.client.complete_multipart_upload(&self.key, &self.upload_id, &parts))?;
        self.state = State::Completed;
        self.stop_workers();
        let marker_removed = self.cfg.retry.run(|| self.client.delete_object(&marker_key(&self.key))).is_ok();
        Ok(Completed { size: self.end, parts: parts.len() as u32, marker_removed, buffers_allocated: self.allocated })
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }

    /// Gives up: stops the uploads, aborts the multipart upload (so no object appears) and
    /// writes `reason` into `<key>.incomplete`.
    pub fn abort(mut self, reason: &str) -> Aborted {
        self.abort_inner(reason)
    }

    fn abort_inner(&mut self, reason: &str) -> Aborted {
        self.state = State::Aborted;
        self.stop_workers();
        self.open.clear();
        self.pool.clear();
        let upload_aborted = self.cfg.retry.run(|| self.client.abort_multipart_upload(&self.key, &self.upload_id));
        let text = format!("the upload of {} failed and was abandoned: {reason}\n", self.key);
        let marker_written = self.cfg.retry.run(|| self.client.put_object(&marker_key(&self.key), text.as_bytes()));
        Aborted { upload_aborted, marker_written }
    }
}

impl WriteAt for MultipartSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.poll();
        if self.failure.is_some() || self.state != State::Open {
            return Err(self.io_error());
        }
        let size = self.cfg.part_size;
        let (mut off, mut rest) = (offset, data);
        while !rest.is_empty() {
            let n = ((size - off % size) as usize).min(rest.len());
            if let Err(e) = self.write_piece(off, &rest[..n]) {
                self.fail(e);
                return Err(self.io_error());
            }
            off += n as u64;
            rest = &rest[n..];
        }
        self.end = self.end.max(offset + data.len() as u64);
        if self.failure.is_some() {
            return Err(self.io_error());
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.poll();
        if self.failure.is_some() {
            return Err(self.io_error());
        }
        Ok(())
    }
}

impl Drop for MultipartSink {
    fn drop(&mut self) {
        if self.state == State::Open {
            let _ = self.abort_inner("the dump writer stopped before the upload was completed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The save pipeline writes from its own thread.
    #[test]
    fn the_sink_can_move_to_the_writer_thread() {
        fn send<T: Send>() {}
        send::<MultipartSink>();
        send::<&mut MultipartSink>();
        send::<Client>();
    }

    #[test]
    fn part_size_from_estimate() {
        assert_eq!(MultipartConfig::for_estimated_size(0).part_size, MIN_PART_SIZE);
        assert_eq!(MultipartConfig::for_estimated_size(40 << 30).part_size, 5 << 20);
        // 1 TiB: 117 MiB parts, 8,963 of them.
        let c = MultipartConfig::for_estimated_size(1 << 40);
        assert_eq!(c.part_size, 117 << 20);
        assert!((1u64 << 40).div_ceil(c.part_size) <= 9_000);
        assert_eq!(MultipartConfig::for_estimated_size(u64::MAX / 2).part_size, MAX_PART_SIZE);
        assert_eq!(c.memory_bound(), 8 * (117 << 20));
    }

    #[test]
    fn coverage_merges() {
        let mut p = OpenPart { buf: Vec::new(), covered: Vec::new() };
        p.cover(10, 20);
        p.cover(30, 40);
        p.cover(0, 5);
        assert_eq!(p.covered, vec![(0, 5), (10, 20), (30, 40)]);
        p.cover(5, 10);
        assert_eq!(p.covered, vec![(0, 20), (30, 40)]);
        p.cover(15, 35);
        assert_eq!(p.covered, vec![(0, 40)]);
        assert!(p.is_full(40));
        assert!(!p.is_full(41));
        p.cover(40, 41);
        assert!(p.is_full(41));
    }
}
