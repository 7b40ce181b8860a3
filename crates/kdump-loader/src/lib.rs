//! Pure planning for `kexec`: what the image is, what command line the new
//! kernel gets, whether the load can work on this machine, and what the
//! kernel's answer means. No file is opened and no syscall made here.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bootparams;
pub mod bootproto;
pub mod cmdline;
pub mod elfcore;
pub mod errno;
pub mod hex;
pub mod image;
pub mod plan;
pub mod preflight;

pub use image::{BzImage, ImageError, ImageKind};
