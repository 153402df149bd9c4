//! Resident memory of this process, read from `/proc/self/status` (Linux).

use std::fs;

/// Current resident set size (`VmRSS`) in bytes, if the platform reports it.
pub fn current_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// Peak resident set size so far (`VmHWM`) in bytes, if the platform reports it.
pub fn peak_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_kib(&status, name)
}

/// Finds `name` in a `/proc/<pid>/status` text and converts its `<n> kB` value to bytes.
fn parse_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Formats a byte count in MiB with one decimal, e.g. `41.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tsluice\nVmHWM:\t   41236 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(41_236 * 1024));
        assert_eq!(parse_kib(status, "VmRSS:"), Some(40_000 * 1024));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            assert!(peak_bytes().unwrap() >= current_bytes().unwrap() / 2);
        }
    }
}
