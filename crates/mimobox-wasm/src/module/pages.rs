//! What the kernel's page table tells of a linear memory, and what a
//! session makes of it.
//!
//! A linear memory is its image mapped copy-on-write (or zero pages past
//! it); a page the guest writes becomes a private anonymous copy. So a
//! page that is not mapped at all (never touched, or reset by the
//! allocator), or mapped and still the file's, holds exactly what a fresh
//! instance of the same image holds there. Anything else (anonymous,
//! swapped, in migration) may have been written.
//!
//! Two uses: a pause passes over the pages a session never wrote, unread
//! ([`untouched`]); and a new session has the pages its restore turn will
//! write made private up front, in one call, instead of taking a fault for
//! each ([`WarmPages`]).

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// Present in memory.
const PRESENT: u64 = 1 << 63;
/// Swapped out (or in migration).
const SWAPPED: u64 = 1 << 62;
/// A page of a file (or shared anonymous memory), not a private copy.
const FILE: u64 = 1 << 61;
/// Mapped only here: set for a private copy, not for the shared zero page
/// a read of untouched memory maps.
const EXCLUSIVE: u64 = 1 << 56;
/// Most page ranges a module remembers as written by a restore turn; a
/// restore that writes more scattered ranges than this is not learned
/// from (each range costs one call when a session opens).
const MAX_WARM_RANGES: usize = 4096;

/// The page table's entry of each page of `data` (page-aligned); `None`
/// when it cannot be read.
fn entries(data: &[u8]) -> Option<Vec<u64>> {
    let page = rustix::param::page_size();
    let start = data.as_ptr() as usize;
    if data.is_empty() || !start.is_multiple_of(page) {
        return None;
    }
    let pages = data.len().div_ceil(page);
    let mut raw = vec![0u8; pages * 8];
    let pagemap = std::fs::File::open("/proc/self/pagemap").ok()?;
    pagemap.read_exact_at(&mut raw, (start / page * 8) as u64).ok()?;
    Some(raw.chunks_exact(8).map(|entry| u64::from_le_bytes(entry.try_into().unwrap_or_default())).collect())
}

/// For each page of `data` (page-aligned), whether it is untouched since
/// it was mapped: not present, or the file's; `None` when that cannot be
/// told. Anything else may have been written (the shared zero page, too,
/// is counted so: this errs on the side of reading a page).
fn clean_pages(data: &[u8]) -> Option<Vec<bool>> {
    let entries = entries(data)?;
    Some(entries.iter().map(|e| e & SWAPPED == 0 && (e & PRESENT == 0 || e & FILE != 0)).collect())
}

/// For each `chunk`-byte piece of `data` (a whole number of pages, or one
/// page a piece), whether all its pages are untouched; `None` when that
/// cannot be told.
pub(crate) fn untouched(data: &[u8], chunk: usize) -> Option<Vec<bool>> {
    let page = rustix::param::page_size();
    if !chunk.is_multiple_of(page) && !page.is_multiple_of(chunk) {
        return None;
    }
    let clean = clean_pages(data)?;
    let pages = clean.len();
    let count = data.len().div_ceil(chunk);
    Some(if chunk >= page {
        let per = chunk / page;
        (0..count).map(|i| clean[i * per..((i + 1) * per).min(pages)].iter().all(|c| *c)).collect()
    } else {
        let per = page / chunk;
        (0..count).map(|i| clean[i / per]).collect()
    })
}

/// The byte ranges of `data` (whole pages, merged where adjacent) that are
/// private copies now (written since they were mapped): present, not the
/// file's, and mapped only here (not the shared zero page of a page only
/// read); `None` when that cannot be told.
fn written(data: &[u8]) -> Option<Vec<Range<usize>>> {
    let page = rustix::param::page_size();
    let entries = entries(data)?;
    let private = |e: &u64| e & PRESENT != 0 && e & FILE == 0 && e & EXCLUSIVE != 0;
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (index, _) in entries.iter().enumerate().filter(|(_, e)| private(e)) {
        let start = index * page;
        let end = (start + page).min(data.len());
        match ranges.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => ranges.push(start..end),
        }
    }
    Some(ranges)
}

/// The pages of a module's linear memory that a new session's restore
/// turn writes, learned from the first session opened on the module.
///
/// Each later session has them made private copies in one
/// `madvise(MADV_POPULATE_WRITE)` a range before its restore runs. The
/// restore would copy the same pages anyway, one fault at a time (and,
/// for a page it reads first, with a second fault and a TLB flush across
/// the process's threads); so it changes no byte, and costs no memory a
/// session would not take, but for what a reused pool slot kept resident
/// for the session it was learned from (at most the slot's 1 MiB kept
/// resident).
#[derive(Debug, Default)]
pub(crate) struct WarmPages {
    learned: OnceLock<Box<[Range<usize>]>>,
}

impl WarmPages {
    /// Whether the pages are known (a session opened on this module has
    /// finished its restore).
    fn is_learned(&self) -> bool {
        self.learned.get().is_some()
    }

    /// Makes the learned pages of `memory` private copies, as if each had
    /// been written; ranges past its end are cut off. Does nothing before
    /// the pages are learned, or where the kernel has no
    /// `MADV_POPULATE_WRITE` (the pages then fault in as they are written).
    pub(crate) fn populate(&self, memory: &mut [u8]) {
        let Some(ranges) = self.learned.get() else { return };
        let base = memory.as_mut_ptr();
        for range in ranges.iter() {
            let end = range.end.min(memory.len());
            if range.start >= end {
                break;
            }
            // SAFETY: the range lies within `memory`, which is borrowed
            // mutably for the call, so nothing else reads or writes it.
            // Populating a private mapping for writing copies each page
            // (or maps a zero page) exactly as a write fault would, and
            // leaves every byte's value as it was.
            let populated = unsafe {
                rustix::mm::madvise(
                    base.add(range.start).cast(),
                    end - range.start,
                    rustix::mm::Advice::LinuxPopulateWrite,
                )
            };
            if populated.is_err() {
                return;
            }
        }
    }

    /// Learns the pages `memory` holds written, once: called after the
    /// restore turn of a session whose memory was mapped fresh for it.
    pub(crate) fn learn(&self, memory: &[u8]) {
        if self.is_learned() {
            return;
        }
        let ranges = match written(memory) {
            Some(ranges) if ranges.len() <= MAX_WARM_RANGES => ranges,
            // Unreadable, or too scattered to be worth a call a range:
            // remembered as nothing, so that it is not tried again.
            _ => Vec::new(),
        };
        let _ = self.learned.set(ranges.into_boxed_slice());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page-aligned piece of a fresh anonymous mapping (an allocation
    /// this large is one), and the rest of it kept alive beside it.
    fn mapping(size: usize) -> (Vec<u8>, usize) {
        let page = rustix::param::page_size();
        let memory = vec![0u8; size + page];
        let offset = memory.as_ptr().align_offset(page);
        (memory, offset)
    }

    /// Pages written, read (the shared zero page) and never touched.
    #[test]
    fn written_pages_are_told_from_untouched_ones() {
        let page = rustix::param::page_size();
        let (mut memory, offset) = mapping(64 << 20);
        let data = &mut memory[offset..offset + (64 << 20)];
        data[3 * page] = 1;
        data[10 * page + 7] = 2;
        let read = std::hint::black_box(data[20 * page]);
        assert_eq!(read, 0);
        let clean = untouched(data, page).expect("pagemap readable");
        assert!(!clean[3] && !clean[10], "written pages are not clean");
        assert!(clean[30] && clean[1000], "pages never touched are clean");
        let halves = untouched(data, page / 2).unwrap();
        assert!(!halves[6] && !halves[7] && halves[60], "a page's pieces share its state");
    }

    /// What one memory wrote is learned as merged page ranges, and another
    /// memory has exactly those pages made private, with its bytes as they
    /// were, and no page past its end touched.
    #[test]
    fn learned_pages_are_populated_in_another_memory_and_nothing_else() {
        let page = rustix::param::page_size();
        let (mut first, offset) = mapping(16 << 20);
        let data = &mut first[offset..offset + (16 << 20)];
        for index in [2, 3, 4, 9, 4000] {
            data[index * page + 1] = 7;
        }
        // Read only: the shared zero page, not learned.
        assert_eq!(std::hint::black_box(data[12 * page]), 0);
        let warm = WarmPages::default();
        assert!(!warm.is_learned());
        warm.learn(data);
        let learned = warm.learned.get().expect("learned").to_vec();
        assert_eq!(learned, vec![2 * page..5 * page, 9 * page..10 * page, 4000 * page..4001 * page]);

        // A second memory, shorter than the last range: the pages within
        // it are made private, zero as they were; nothing else is.
        let (mut second, offset) = mapping(16 << 20);
        let data = &mut second[offset..offset + 1000 * page];
        data[page] = 5;
        warm.populate(data);
        let clean = untouched(data, page).expect("pagemap readable");
        for index in [1, 2, 3, 4, 9] {
            assert!(!clean[index], "page {index} is private");
        }
        for index in [0, 5, 8, 10, 999] {
            assert!(clean[index], "page {index} is left alone");
        }
        assert_eq!(data[page], 5);
        assert!(data[2 * page..5 * page].iter().all(|b| *b == 0), "populating changes no byte");

        // Learning again changes nothing.
        warm.learn(&second[offset..offset + page]);
        assert_eq!(warm.learned.get().unwrap().len(), 3);
    }
}
