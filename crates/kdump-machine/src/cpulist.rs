//! CPU lists as the kernel prints them (`/sys/devices/system/cpu/possible`).

use crate::ParseError;

/// Parses a kernel CPU list such as `0-3,6,8-9` into sorted, unique CPU numbers.
///
/// An empty (or all-whitespace) list is an empty set, as the kernel prints for
/// e.g. `offline` when every CPU is online.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, ParseError> {
    let bad = || ParseError::CpuList(text.to_string());
    let mut cpus = Vec::new();
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(cpus);
    }
    for part in trimmed.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().map_err(|_| bad())?, b.parse::<u32>().map_err(|_| bad())?),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        // A list longer than any real machine (the kernel caps NR_CPUS at 8192)
        // is refused instead of allocated.
        if first > last || last >= 1 << 16 {
            return Err(bad());
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,6,8-9\n").unwrap(), vec![0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(parse_cpu_list("0\n").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["a", "3-1", "1-", "0-70000", "1,,2"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }
}
