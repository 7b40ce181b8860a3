//! The core collector (what distributions call the `core_collector`): opens a dump source in
//! any format, decides page by page what a dump level keeps, and saves it to a file (the whole
//! atomic lifecycle), several files (makedumpfile's `--split`, joined again by
//! `--reassemble`), a stream (makedumpfile's flattened format) or any positioned sink (a
//! remote file, an object upload). `kdump dump`, `makedumpfile` and the capture init call it; its
//! system calls go through `kdump-sys`; it prints nothing.
#![forbid(unsafe_code)]

pub mod error;
pub mod filter;
pub mod save;
pub mod source;
pub mod split;

pub use error::{Error, Result};
pub use save::{Incomplete, Notice, Observer, Quiet, SaveRequest, Saved, SavedPart, Sink, Timings, Written, save};
pub use source::{Dump, DumpFormat, PhysAdapter, SplitFormat};
pub use split::{Reassembled, SplitTarget, reassemble, save_split};
