//! A bounds-checked little/big-endian byte reader for binlog payloads.
//!
//! Every read returns a [`DecodeError`] naming what was being read and the
//! offset, so a malformed or truncated event is an error, never a panic.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub what: String,
    pub offset: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.what, self.offset)
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError {
            what: what.into(),
            offset: self.pos,
        }
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// Unsigned little-endian integer of `n` (1..=8) bytes.
    pub fn uint_le(&mut self, n: usize, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(n, what)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    }

    /// Unsigned big-endian integer of `n` (1..=8) bytes.
    pub fn uint_be(&mut self, n: usize, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(n, what)?;
        Ok(b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
    }

    /// MySQL length-encoded integer.
    pub fn lenenc(&mut self, what: &str) -> Result<u64, DecodeError> {
        match self.u8(what)? {
            x @ 0..=250 => Ok(u64::from(x)),
            0xfc => self.uint_le(2, what),
            0xfd => self.uint_le(3, what),
            0xfe => self.uint_le(8, what),
            x => Err(self.err(format!(
                "invalid length-encoded integer prefix {x:#x} in {what}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_truncation() {
        let mut r = Reader::new(&[1, 2, 3, 0xfc, 0x10, 0x27]);
        assert_eq!(r.uint_le(2, "x").unwrap(), 0x0201);
        assert_eq!(r.u8("y").unwrap(), 3);
        assert_eq!(r.lenenc("z").unwrap(), 10000);
        let e = r.u8("tail").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.to_string().contains("truncated tail"));
        let mut r = Reader::new(&[0x12, 0x34, 0x56]);
        assert_eq!(r.uint_be(3, "be").unwrap(), 0x123456);
    }
}
