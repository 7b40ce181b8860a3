//! The kdump service, pure parts: nothing here opens a file or makes a syscall.
//!
//! - [`config`]: `/etc/kdump.toml`, its defaults and validation;
//! - [`modules`]: `modules.dep` / `modules.builtin` resolution (dependencies first);
//! - [`initramfs`]: the capture initramfs (`/init` = the static `kdump`, the config, the modules);
//! - [`superblock`]: filesystem UUID and label from a superblock (ext2/3/4, XFS, btrfs);
//! - [`naming`]: per-crash directory names (`<host>-<UTC time>`);
//! - [`estimate`]: the `crashkernel=` arithmetic.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod capture;
pub mod capture_kernel;
pub mod config;
pub mod estimate;
pub mod fleet;
pub mod initramfs;
pub mod modules;
pub mod naming;
pub mod superblock;

pub use config::{
    Action, Addressing, Codec, Config, ConfigError, Destination, FailureAction, Network, NfsDestination, NfsVersion,
    S3Destination, SshDestination, TargetSpec,
};
