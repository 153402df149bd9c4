//! The journal a campaign member keeps: one file per member process, one line per event,
//! appended with `O_APPEND` in a single `write` each, so that a SIGKILL loses at most a line
//! not yet written (the kernel keeps what was written) and never tears one in practice.
//!
//! # Delivery semantics
//!
//! A member writes a record's line inside its handler, before the handler returns, so before
//! the record is acknowledged: a journaled record that was not committed yet is delivered
//! again (a duplicate), never lost.
//!
//! # Format
//!
//! Space-separated text, times in microseconds since the Unix epoch:
//!
//! - `h KEY SEQ PARTITION OFFSET PRODUCED START END`: a record handled (key `kN`, its
//!   sequence number within the key, when it was produced, when its handler started and
//!   ended).
//! - `a PARTITION AT` / `r PARTITION AT`: the pipeline started / stopped a partition.
//! - `c PARTITION OFFSET AT`: the broker accepted this member's commit of `OFFSET` (the next
//!   record to read) for the partition.
//! - `m PEAK_RSS_BYTES AT`: the process's peak resident set size so far.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (the journal's clock, shared by all processes).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// One handling of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub key: u32,
    pub seq: u64,
    pub partition: i32,
    pub offset: i64,
    pub produced_us: u64,
    pub start_us: u64,
    pub end_us: u64,
}

/// A line of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Handled(Handled),
    Assigned { partition: i32, at_us: u64 },
    Revoked { partition: i32, at_us: u64 },
    Committed { partition: i32, offset: i64 },
    Memory { peak_rss_bytes: u64 },
}

/// The writing side, shared by a member's handlers (writes through `&File` need no lock:
/// `O_APPEND` places each whole write at the end).
pub struct JournalWriter {
    file: File,
}

impl JournalWriter {
    /// Creates (or appends to) the journal at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    pub fn handled(&self, handled: &Handled) -> io::Result<()> {
        let Handled {
            key,
            seq,
            partition,
            offset,
            produced_us,
            start_us,
            end_us,
        } = handled;
        self.line(&format!(
            "h k{key} {seq} {partition} {offset} {produced_us} {start_us} {end_us}\n"
        ))
    }

    pub fn assigned(&self, partition: i32) -> io::Result<()> {
        self.line(&format!("a {partition} {}\n", now_us()))
    }

    pub fn revoked(&self, partition: i32) -> io::Result<()> {
        self.line(&format!("r {partition} {}\n", now_us()))
    }

    pub fn committed(&self, partition: i32, offset: i64) -> io::Result<()> {
        self.line(&format!("c {partition} {offset} {}\n", now_us()))
    }

    pub fn memory(&self, peak_rss_bytes: u64) -> io::Result<()> {
        self.line(&format!("m {peak_rss_bytes} {}\n", now_us()))
    }

    /// One `write` call for the whole line.
    fn line(&self, line: &str) -> io::Result<()> {
        (&self.file).write_all(line.as_bytes())
    }
}

/// A journal read back: its entries in the order written, and the lines that did not parse
/// (at most a torn last line after a kill).
#[derive(Debug, Default)]
pub struct JournalRead {
    pub entries: Vec<Entry>,
    pub torn_lines: u64,
}

/// Reads the journal at `path`; a missing file reads as empty (a member killed before it
/// created its journal).
pub fn read(path: &Path) -> io::Result<JournalRead> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(JournalRead::default()),
        Err(error) => return Err(error),
    };
    let mut read = JournalRead::default();
    for line in BufReader::new(file).lines() {
        match parse(&line?) {
            Some(entry) => read.entries.push(entry),
            None => read.torn_lines += 1,
        }
    }
    Ok(read)
}

/// Parses one line; `None` when it is not a whole, well-formed line.
fn parse(line: &str) -> Option<Entry> {
    let mut fields = line.split(' ');
    let kind = fields.next()?;
    let rest: Vec<&str> = fields.collect();
    let number = |index: usize| rest.get(index)?.parse::<u64>().ok();
    let partition = |index: usize| rest.get(index)?.parse::<i32>().ok();
    let entry = match (kind, rest.len()) {
        ("h", 7) => Entry::Handled(Handled {
            key: rest[0].strip_prefix('k')?.parse().ok()?,
            seq: number(1)?,
            partition: partition(2)?,
            offset: rest[3].parse().ok()?,
            produced_us: number(4)?,
            start_us: number(5)?,
            end_us: number(6)?,
        }),
        ("a", 2) => Entry::Assigned {
            partition: partition(0)?,
            at_us: number(1)?,
        },
        ("r", 2) => Entry::Revoked {
            partition: partition(0)?,
            at_us: number(1)?,
        },
        ("c", 3) => Entry::Committed {
            partition: partition(0)?,
            offset: rest[1].parse().ok()?,
        },
        ("m", 2) => Entry::Memory {
            peak_rss_bytes: number(0)?,
        },
        _ => return None,
    };
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_and_torn_lines_are_counted() {
        let dir = std::env::temp_dir().join(format!("sluice-journal-test-{}", now_us()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m0-0.journal");
        let journal = JournalWriter::create(&path).unwrap();
        let handled = Handled {
            key: 7,
            seq: 12,
            partition: 3,
            offset: 99,
            produced_us: 1,
            start_us: 2,
            end_us: 3,
        };
        journal.assigned(3).unwrap();
        journal.handled(&handled).unwrap();
        journal.memory(4096).unwrap();
        journal.committed(3, 100).unwrap();
        journal.revoked(3).unwrap();
        (&journal.file).write_all(b"h k7 13 3").unwrap();
        let read = read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read.torn_lines, 1);
        assert!(matches!(
            read.entries[0],
            Entry::Assigned { partition: 3, .. }
        ));
        assert_eq!(read.entries[1], Entry::Handled(handled));
        assert_eq!(
            read.entries[2],
            Entry::Memory {
                peak_rss_bytes: 4096
            }
        );
        assert_eq!(
            read.entries[3],
            Entry::Committed {
                partition: 3,
                offset: 100
            }
        );
        assert!(matches!(
            read.entries[4],
            Entry::Revoked { partition: 3, .. }
        ));
    }

    #[test]
    fn a_missing_journal_is_empty() {
        let read = read(Path::new("/nonexistent/sluice/journal")).unwrap();
        assert!(read.entries.is_empty());
    }
}
