//! The line format shared by `sluice produce` and `sluice consume`:
//! `[HEADERS<TAB>][KEY<SEP>]VALUE`, bytes throughout.
//!
//! - With headers on (`produce --parse-headers`, `consume --print-headers`), a line starts
//!   with its headers and a tab: `NAME=VALUE` pairs separated by commas, a `NAME` without `=`
//!   being a header with a null value, nothing before the tab meaning no headers. Names are
//!   UTF-8 and non-empty; neither names nor values can hold a comma or a tab, and names cannot
//!   hold `=` (values can).
//! - With a key separator `SEP`, the bytes before the first `SEP` (after the headers) are the
//!   key and the rest is the value; a line without `SEP` is a record without a key, so
//!   `consume` prints a keyless record as its value alone.
//! - Otherwise the whole line is the value. A null value prints as nothing.

use std::fmt;

/// What a line holds, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineRecord<'a> {
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

/// How lines are read and written.
#[derive(Debug, Clone, Default)]
pub struct LineFormat {
    /// Lines start with headers and a tab.
    pub headers: bool,
    /// The key comes before the first occurrence of this separator.
    pub key_separator: Option<Vec<u8>>,
}

/// Why a line does not fit the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    NoHeaderTab,
    EmptyHeaderName,
    HeaderNameNotUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoHeaderTab => {
                "no tab after the headers (with --parse-headers every line starts with \
                 NAME=VALUE,...<TAB>, or just a tab for none)"
            }
            Self::EmptyHeaderName => "a header has an empty name",
            Self::HeaderNameNotUtf8 => "a header name is not UTF-8",
        })
    }
}

impl std::error::Error for LineError {}

impl LineFormat {
    /// Splits a line (without its newline) into headers, key and value.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<LineRecord<'a>, LineError> {
        let mut record = LineRecord::default();
        let mut rest = line;
        if self.headers {
            let tab = rest
                .iter()
                .position(|&byte| byte == b'\t')
                .ok_or(LineError::NoHeaderTab)?;
            let headers = &rest[..tab];
            rest = &rest[tab + 1..];
            if !headers.is_empty() {
                for pair in headers.split(|&byte| byte == b',') {
                    let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
                        Some(equals) => (&pair[..equals], Some(&pair[equals + 1..])),
                        None => (pair, None),
                    };
                    if name.is_empty() {
                        return Err(LineError::EmptyHeaderName);
                    }
                    let name =
                        std::str::from_utf8(name).map_err(|_| LineError::HeaderNameNotUtf8)?;
                    record.headers.push((name, value));
                }
            }
        }
        if let Some(separator) = &self.key_separator {
            if let Some(at) = find(rest, separator) {
                record.key = Some(&rest[..at]);
                rest = &rest[at + separator.len()..];
            }
        }
        record.value = rest;
        Ok(record)
    }

    /// Writes a record as a line, newline included. `headers` are (name, value) bytes.
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        headers: &[(&[u8], Option<&[u8]>)],
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        if self.headers {
            for (index, (name, value)) in headers.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(name);
                if let Some(value) = value {
                    out.push(b'=');
                    out.extend_from_slice(value);
                }
            }
            out.push(b'\t');
        }
        if let (Some(separator), Some(key)) = (&self.key_separator, key) {
            out.extend_from_slice(key);
            out.extend_from_slice(separator);
        }
        out.extend_from_slice(value.unwrap_or_default());
        out.push(b'\n');
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return haystack.iter().position(|&byte| byte == needle[0]);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(headers: bool, separator: Option<&[u8]>) -> LineFormat {
        LineFormat {
            headers,
            key_separator: separator.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn a_plain_line_is_the_value_byte_for_byte() {
        let line = b"caf\xc3\xa9 \xff\x00\r";
        let record = format(false, None).parse(line).unwrap();
        assert_eq!(record.value, line);
        assert_eq!(record.key, None);
        assert!(record.headers.is_empty());
        let empty = format(false, None).parse(b"").unwrap();
        assert_eq!(empty.value, b"");
    }

    #[test]
    fn the_key_ends_at_the_first_separator() {
        let keyed = format(false, Some(b"::"));
        let record = keyed.parse(b"k1::v::w").unwrap();
        assert_eq!(record.key, Some(&b"k1"[..]));
        assert_eq!(record.value, b"v::w");
        let record = keyed.parse(b"::v").unwrap();
        assert_eq!(record.key, Some(&b""[..]));
        assert_eq!(record.value, b"v");
        let record = keyed.parse(b"no separator:").unwrap();
        assert_eq!(record.key, None);
        assert_eq!(record.value, b"no separator:");
    }

    #[test]
    fn headers_come_first_and_end_at_a_tab() {
        let with = format(true, Some(b":"));
        let record = with.parse(b"a=1,b,c=x=y,d=\tk:v\tw").unwrap();
        assert_eq!(
            record.headers,
            vec![
                ("a", Some(&b"1"[..])),
                ("b", None),
                ("c", Some(&b"x=y"[..])),
                ("d", Some(&b""[..]))
            ]
        );
        assert_eq!(record.key, Some(&b"k"[..]));
        assert_eq!(record.value, b"v\tw");
        let none = with.parse(b"\tv").unwrap();
        assert!(none.headers.is_empty());
        assert_eq!(none.value, b"v");
        assert_eq!(with.parse(b"v"), Err(LineError::NoHeaderTab));
        assert_eq!(with.parse(b"a,,b\tv"), Err(LineError::EmptyHeaderName));
        assert_eq!(with.parse(b"=1\tv"), Err(LineError::EmptyHeaderName));
        assert_eq!(with.parse(b"\xff=1\tv"), Err(LineError::HeaderNameNotUtf8));
    }

    #[test]
    fn writing_then_parsing_gives_the_record_back() {
        let with = format(true, Some(b"|"));
        let mut out = Vec::new();
        with.write(
            &mut out,
            &[(b"a", Some(b"1\xff")), (b"b", None)],
            Some(b"key"),
            Some(b"val|ue\r"),
        );
        assert_eq!(out, b"a=1\xff,b\tkey|val|ue\r\n");
        let record = with.parse(&out[..out.len() - 1]).unwrap();
        assert_eq!(
            record.headers,
            vec![("a", Some(&b"1\xff"[..])), ("b", None)]
        );
        assert_eq!(record.key, Some(&b"key"[..]));
        assert_eq!(record.value, b"val|ue\r");

        let mut out = Vec::new();
        with.write(&mut out, &[], None, None);
        assert_eq!(out, b"\t\n");
        let mut out = Vec::new();
        format(false, Some(b"|")).write(&mut out, &[(b"h", None)], None, Some(b"v"));
        assert_eq!(out, b"v\n");
    }
}
