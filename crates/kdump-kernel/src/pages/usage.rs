//! Dump-level policy: which level a classifier can apply, and what each level would keep
//! (`kdump dump --mem-usage`, makedumpfile's report).

use super::{PageClass, Rules, level};

impl Rules {
    /// The dump level actually applied for `level`: its bits minus the classes these rules
    /// cannot decide (a class whose keys the kernel does not export is kept, not guessed).
    pub fn effective_level(&self, level: u32) -> u32 {
        let mut effective = level;
        for (decidable, bit) in [
            (self.free, level::FREE),
            (self.cache, level::CACHE),
            (self.cache_private, level::CACHE_PRIVATE),
            (self.user, level::USER),
        ] {
            if !decidable {
                effective &= !bit;
            }
        }
        effective
    }
}

/// The pages of a whole dump by class, for `--mem-usage`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemUsage {
    /// RAM pages per class, indexed by `PageClass as usize`.
    pub counts: [u64; PageClass::ALL.len()],
    /// All-zero pages among those level 31 keeps (makedumpfile counts them there).
    pub zero: u64,
    /// RAM pages in all.
    pub total: u64,
}

impl MemUsage {
    /// Pages of class `c`.
    pub fn count(&self, c: PageClass) -> u64 {
        self.counts[c as usize]
    }

    /// Dumpable kernel data: what no level leaves out, zero pages aside.
    pub fn kernel_data(&self) -> u64 {
        (self.count(PageClass::Kernel) + self.count(PageClass::NoMemMap) + self.count(PageClass::Unreadable))
            .saturating_sub(self.zero)
    }

    /// Pages a dump at `level` holds when the classifier can apply `effective` (see
    /// [`Rules::effective_level`]) and, with `pass_always`, runs even without struct-page bits
    /// (the kernel exports `PG_hwpoison`, so hwpoisoned and offline pages go at every level).
    /// With bit 1, the zero pages counted among those level 31 keeps are subtracted: for levels
    /// without every bit this is an upper bound.
    pub fn pages_at(&self, level: u32, effective: u32, pass_always: bool) -> u64 {
        let applied = level & (effective | level::ZERO);
        let pass_runs = applied & level::STRUCT_PAGE_BITS != 0 || pass_always;
        let mut pages = self.total;
        if pass_runs {
            for c in PageClass::ALL {
                if c.excluded_at(applied) {
                    pages = pages.saturating_sub(self.count(c));
                }
            }
        }
        if applied & level::ZERO != 0 {
            pages = pages.saturating_sub(self.zero);
        }
        pages
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // fixtures of known small sizes
mod tests {
    use super::*;

    fn usage() -> MemUsage {
        let mut u = MemUsage { zero: 5, total: 1000, ..MemUsage::default() };
        for (c, n) in [
            (PageClass::Kernel, 300),
            (PageClass::Cache, 200),
            (PageClass::CachePrivate, 100),
            (PageClass::User, 150),
            (PageClass::Free, 240),
            (PageClass::Hwpoison, 4),
            (PageClass::Offline, 6),
        ] {
            u.counts[c as usize] = n;
        }
        u
    }

    #[test]
    fn pages_per_level_follow_makedumpfile() {
        let u = usage();
        assert_eq!(u.pages_at(0, 31, false), 1000, "level 0 keeps everything");
        assert_eq!(u.pages_at(0, 31, true), 990, "hwpoisoned and offline go when the pass always runs");
        assert_eq!(u.pages_at(1, 31, false), 995);
        assert_eq!(u.pages_at(2, 31, false), 1000 - 200 - 10, "level 2: cache without private");
        assert_eq!(u.pages_at(4, 31, false), 1000 - 300 - 10, "level 4: all cache");
        assert_eq!(u.pages_at(31, 31, false), 300 - 5, "level 31: kernel data without zero pages");
        assert_eq!(u.kernel_data(), 295);
        // A classifier that cannot tell free pages keeps them.
        assert_eq!(u.pages_at(31, 31 & !level::FREE, false), 300 - 5 + 240);
    }

    #[test]
    fn rules_that_cannot_decide_a_class_lower_the_level() {
        let all = Rules { free: true, cache: true, cache_private: true, user: true, ..Rules::default() };
        assert_eq!(all.effective_level(31), 31);
        assert_eq!(Rules { user: false, ..all }.effective_level(31), 31 & !level::USER);
        assert_eq!(Rules::default().effective_level(31), level::ZERO);
        assert_eq!(Rules::default().effective_level(17), 1);
    }
}
