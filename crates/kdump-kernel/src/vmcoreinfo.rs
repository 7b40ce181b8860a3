//! VMCOREINFO: the `KEY=VALUE` text the kernel leaves for dump tools.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Parsed VMCOREINFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vmcoreinfo {
    entries: BTreeMap<String, String>,
}

/// The VMCOREINFO key that marks a live dump (see [`Vmcoreinfo::live_dump_time`]).
pub const LIVE_DUMP_KEY: &str = "LIVE_DUMP";

impl Vmcoreinfo {
    /// Parses the note text. Lines without `=` and trailing NULs are ignored;
    /// a repeated key keeps its last value, as the kernel appends (CRASHTIME).
    pub fn parse(text: &[u8]) -> Self {
        let text = String::from_utf8_lossy(text);
        let entries = text
            .trim_end_matches('\0')
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Self { entries }
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// All entries, sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn require(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    fn bad(key: &str, value: &str) -> Error {
        Error::BadValue { key: key.to_string(), value: value.to_string() }
    }

    /// `SYMBOL(name)`: a kernel virtual address, hex without `0x`.
    pub fn symbol(&self, name: &str) -> Result<u64> {
        let key = format!("SYMBOL({name})");
        let v = self.require(&key)?;
        u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| Self::bad(&key, v))
    }

    /// A decimal value such as `SIZE(x)`; `NUMBER`s are decimal except a few
    /// the kernel prints in hex with `0x`, which are accepted too.
    fn decimal(&self, key: &str) -> Result<i64> {
        let v = self.require(key)?;
        if let Some(hex) = v.strip_prefix("0x") {
            return u64::from_str_radix(hex, 16).map(|x| x as i64).map_err(|_| Self::bad(key, v));
        }
        v.parse::<i64>().map_err(|_| Self::bad(key, v))
    }

    fn unsigned(&self, key: &str) -> Result<u64> {
        let v = self.decimal(key)?;
        u64::try_from(v).map_err(|_| Self::bad(key, &v.to_string()))
    }

    /// `SIZE(type)` in bytes.
    pub fn size(&self, name: &str) -> Result<u64> {
        self.unsigned(&format!("SIZE({name})"))
    }

    /// `OFFSET(type.member)` in bytes.
    pub fn offset(&self, member: &str) -> Result<u64> {
        self.unsigned(&format!("OFFSET({member})"))
    }

    /// `LENGTH(name)`: an array length.
    pub fn length(&self, name: &str) -> Result<u64> {
        self.unsigned(&format!("LENGTH({name})"))
    }

    /// `NUMBER(name)`, which may be negative (e.g. PAGE_BUDDY_MAPCOUNT_VALUE).
    pub fn number(&self, name: &str) -> Result<i64> {
        self.decimal(&format!("NUMBER({name})"))
    }

    /// `OSRELEASE`.
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE")
    }

    /// `PAGESIZE` (4096 when absent).
    pub fn page_size(&self) -> Result<u64> {
        if self.get("PAGESIZE").is_none() {
            return Ok(4096);
        }
        self.unsigned("PAGESIZE")
    }

    /// `KERNELOFFSET`: the KASLR slide of the kernel text (hex, 0 when absent).
    pub fn kernel_offset(&self) -> Result<u64> {
        match self.get("KERNELOFFSET") {
            None => Ok(0),
            Some(v) => u64::from_str_radix(v, 16).map_err(|_| Self::bad("KERNELOFFSET", v)),
        }
    }

    /// When a live dump (of a running kernel, from `/proc/kcore`) was taken: the
    /// `LIVE_DUMP=<seconds since the epoch>` line `kdump dump` adds to the VMCOREINFO it
    /// writes. Other readers ignore the unknown key.
    pub fn live_dump_time(&self) -> Option<i64> {
        self.get(LIVE_DUMP_KEY)?.trim().parse().ok()
    }

    /// `CRASHTIME`: seconds since the epoch at the panic.
    pub fn crash_time(&self) -> Option<i64> {
        self.get("CRASHTIME").and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"OSRELEASE=6.1.0-56-cloud-amd64\nPAGESIZE=4096\nSYMBOL(prb)=ffffffff93c622c0\n\
SIZE(printk_info)=88\nOFFSET(printk_info.caller_id)=20\nLENGTH(zone.free_area)=11\n\
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\nNUMBER(VMALLOC_START)=0xffa0000000000000\nKERNELOFFSET=11200000\n\
CRASHTIME=1795671706\n\0\0";

    #[test]
    fn typed_accessors() {
        let v = Vmcoreinfo::parse(SAMPLE);
        assert_eq!(v.osrelease(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(v.symbol("prb").unwrap(), 0xffff_ffff_93c6_22c0);
        assert_eq!(v.size("printk_info").unwrap(), 88);
        assert_eq!(v.offset("printk_info.caller_id").unwrap(), 20);
        assert_eq!(v.length("zone.free_area").unwrap(), 11);
        assert_eq!(v.number("PAGE_BUDDY_MAPCOUNT_VALUE").unwrap(), -129);
        assert_eq!(v.number("VMALLOC_START").unwrap() as u64, 0xffa0_0000_0000_0000);
        assert_eq!(v.kernel_offset().unwrap(), 0x1120_0000);
        assert_eq!(v.crash_time(), Some(1_795_671_706));
        assert_eq!(v.page_size().unwrap(), 4096);
    }

    #[test]
    fn missing_and_bad_keys_are_named() {
        let v = Vmcoreinfo::parse(b"SIZE(page)=x\n");
        assert_eq!(v.symbol("prb"), Err(Error::MissingKey("SYMBOL(prb)".into())));
        assert!(v.symbol("prb").unwrap_err().to_string().contains("SYMBOL(prb)"));
        assert!(matches!(v.size("page"), Err(Error::BadValue { .. })));
    }
}
