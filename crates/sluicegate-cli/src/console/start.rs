//! Where `sluice consume` starts in each partition: `--from`.

use std::fmt;
use std::str::FromStr;

/// A start position, the same for every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record kept.
    Beginning,
    /// Only records written from now on.
    End,
    /// This offset (clamped to what the partition keeps).
    Offset(i64),
    /// This many records before the end.
    BeforeEnd(i64),
    /// The first record whose timestamp is at or after this time, in ms since the epoch.
    Time(i64),
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Beginning => f.write_str("beginning"),
            Self::End => f.write_str("end"),
            Self::Offset(offset) => write!(f, "offset:{offset}"),
            Self::BeforeEnd(records) => write!(f, "offset:-{records}"),
            Self::Time(millis) => write!(f, "time:{millis}"),
        }
    }
}

const EXPECTED: &str =
    "expected beginning, end, offset:N, offset:-N or time:T (T in ms since the epoch or RFC 3339)";

impl FromStr for StartFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}`: {EXPECTED}");
        if text == "beginning" {
            return Ok(Self::Beginning);
        }
        if text == "end" {
            return Ok(Self::End);
        }
        if let Some(offset) = text.strip_prefix("offset:") {
            return match offset.strip_prefix('-') {
                Some(records) => records
                    .parse::<i64>()
                    .ok()
                    .filter(|records| *records >= 0)
                    .map(Self::BeforeEnd)
                    .ok_or_else(bad),
                None => offset
                    .parse::<i64>()
                    .ok()
                    .filter(|offset| *offset >= 0)
                    .map(Self::Offset)
                    .ok_or_else(bad),
            };
        }
        if let Some(time) = text.strip_prefix("time:") {
            if let Ok(millis) = time.parse::<i64>() {
                return if millis >= 0 {
                    Ok(Self::Time(millis))
                } else {
                    Err(bad())
                };
            }
            return parse_rfc3339(time).map(Self::Time).ok_or_else(|| {
                format!("`{time}` is not a time like 2024-05-01T12:00:00Z or 1714564800000 (ms)")
            });
        }
        Err(bad())
    }
}

/// Parses an RFC 3339 date and time (`2024-05-01T12:00:00Z`, `2024-05-01 14:00:00.250+02:00`)
/// into milliseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let separator = |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|b| allowed.contains(b));
    if !(separator(4, b"-")
        && separator(7, b"-")
        && separator(10, b"Tt ")
        && separator(13, b":")
        && separator(16, b":"))
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if bytes.get(at) == Some(&b'.') {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        let fraction = &text[at + 1..at + 1 + digits.min(3)];
        millis = fraction.parse::<i64>().ok()? * 10_i64.pow(3 - fraction.len() as u32);
        at += 1 + digits;
    }
    let offset_minutes = match bytes.get(at..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), ..] if bytes.len() == at + 6 && bytes[at + 3] == b':' => {
            let (hours, minutes) = (number(at + 1..at + 3)?, number(at + 4..at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("beginning".parse(), Ok(StartFrom::Beginning));
        assert_eq!("end".parse(), Ok(StartFrom::End));
        assert_eq!("offset:42".parse(), Ok(StartFrom::Offset(42)));
        assert_eq!("offset:-10".parse(), Ok(StartFrom::BeforeEnd(10)));
        assert_eq!(
            "time:1714564800000".parse(),
            Ok(StartFrom::Time(1_714_564_800_000))
        );
        assert_eq!(
            "time:2024-05-01T12:00:00Z".parse(),
            Ok(StartFrom::Time(1_714_564_800_000))
        );
        for bad in [
            "",
            "start",
            "offset:",
            "offset:x",
            "offset:--1",
            "time:",
            "time:-5",
            "time:yesterday",
        ] {
            assert!(bad.parse::<StartFrom>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times_become_epoch_milliseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01 14:00:00.250+02:00"),
            Some(1_714_564_800_250)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T07:30:00-04:30"),
            Some(1_714_564_800_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01t12:00:00.123456z"),
            Some(1_714_564_800_123)
        );
        for bad in [
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
