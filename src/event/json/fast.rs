//! The envelope written by hand where it is hot: the top-level object, row
//! objects, text values (escaped 8 bytes at a time), the position text, and
//! a snapshot row's `source` block, written once per chunk. Every byte is
//! what the serde path writes (`fast_path_writes_what_serde_writes`).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::values::ValueJson;
use super::{Envelope, JsonEncoder, PositionJson, RowJson, SourceJson, TransactionJson};
use crate::event::{ChangeEvent, Position, TableSchema, TxMeta, Value};

/// The `source` block of the last snapshot chunk written: every row of a
/// chunk shares it. Holds the Arcs it was made from, so that a new chunk
/// can't reuse their addresses while they are compared.
#[derive(Debug, Default)]
pub struct SourceCache {
    last: Mutex<Caches>,
}

#[derive(Debug, Default)]
struct Caches {
    source: Option<Cached>,
    /// `,"ts_ms":…,"ts_us":…,"ts_ns":…` for one processing time (a
    /// group's events share it).
    ts: Option<(i64, Vec<u8>)>,
    /// `"snapshot:<point>:<seq>:` of the last chunk.
    position: Option<(Arc<Position>, u64, Vec<u8>)>,
}

#[derive(Debug)]
struct Cached {
    tx: Arc<TxMeta>,
    table: Arc<TableSchema>,
    at: Arc<Position>,
    json: Vec<u8>,
}

impl Clone for SourceCache {
    fn clone(&self) -> Self {
        SourceCache::default()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// True when `b` must be escaped in a JSON string.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// True when some byte of the 8 in `w` is below 0x20, `"` or `\`.
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit of a
    // byte that had it clear.
    let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64)) != 0
}

/// Writes `s` as a JSON string, escaped as serde_json escapes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if !word_needs_escape(u64::from_le_bytes(w)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if !needs_escape(b) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    serde_into(out, &n);
}

fn write_i64(out: &mut Vec<u8>, n: i64) {
    serde_into(out, &n);
}

fn serde_into<T: Serialize>(out: &mut Vec<u8>, v: &T) {
    // Serializing plain data into a Vec cannot fail: every map key is a string.
    let _ = v.serialize(&mut serde_json::Serializer::new(out));
}

/// A position's text form, without the formatting machinery.
fn write_position_text(out: &mut Vec<u8>, p: &Position) {
    match p {
        Position::Binlog(b) => {
            out.extend_from_slice(b"binlog:");
            out.extend_from_slice(b.file.as_bytes());
            out.push(b':');
            write_u64(out, b.tx_pos);
            if b.event_pos == Position::END {
                out.extend_from_slice(b":*");
            } else {
                out.push(b':');
                write_u64(out, b.event_pos);
                out.push(b':');
                write_u64(out, u64::from(b.row));
            }
        }
        Position::Lsn(l) => {
            out.extend_from_slice(b"lsn:");
            out.extend_from_slice(crate::event::position::format_lsn(l.commit_lsn).as_bytes());
            if l.index == Position::END {
                out.extend_from_slice(b":*");
            } else {
                out.push(b':');
                write_u64(out, l.index);
            }
        }
        Position::Snapshot(s) => {
            out.extend_from_slice(b"snapshot:");
            write_position_text(out, &s.at);
            out.push(b':');
            write_u64(out, s.seq);
            if s.row == Position::END {
                out.extend_from_slice(b":*");
            } else {
                out.push(b':');
                write_u64(out, s.row);
            }
        }
    }
}

/// `"position":"..."`'s value: fast unless the text needs escaping (a
/// binlog file name with a quote), then through serde.
fn write_position(out: &mut Vec<u8>, p: &Position) {
    let start = out.len();
    out.push(b'"');
    write_position_text(out, p);
    if out[start + 1..].iter().any(|&b| needs_escape(b)) {
        out.truncate(start);
        serde_into(out, &PositionJson(p));
        return;
    }
    out.push(b'"');
}

impl JsonEncoder {
    /// Writes a row image: `{"col":value,...}`.
    fn write_row(&self, out: &mut Vec<u8>, row: &RowJson<'_>) {
        out.push(b'{');
        for (i, (col, v)) in row.table.columns.iter().zip(row.values).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, &col.name);
            out.push(b':');
            match v {
                Value::Text(t)
                | Value::Enum(t)
                | Value::Set(t)
                | Value::Json(t)
                | Value::Network(t)
                | Value::Other(t)
                | Value::Composite(t) => write_str(out, t),
                Value::Int(n) => write_i64(out, *n),
                Value::Null => out.extend_from_slice(b"null"),
                _ => serde_into(
                    out,
                    &ValueJson {
                        enc: self,
                        col,
                        v,
                        connector: row.connector,
                    },
                ),
            }
        }
        out.push(b'}');
    }

    fn write_image(&self, out: &mut Vec<u8>, ev: &ChangeEvent, values: Option<&Vec<Value>>) {
        match (values, ev.table.as_deref()) {
            (Some(values), Some(table)) => self.write_row(
                out,
                &RowJson {
                    enc: self,
                    table,
                    values,
                    connector: ev.connector,
                },
            ),
            _ => out.extend_from_slice(b"null"),
        }
    }

    /// The `source` block; a snapshot row's is written once per chunk.
    fn write_source(&self, out: &mut Vec<u8>, env: &Envelope<'_>) {
        let ev = env.ev;
        let (Position::Snapshot(s), Some(table)) = (&ev.position, ev.table.as_ref()) else {
            serde_into(out, &SourceJson(env));
            return;
        };
        let mut caches = self
            .source_cache
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let cache = &mut caches.source;
        if let Some(c) = cache.as_ref()
            && Arc::ptr_eq(&c.tx, &ev.tx)
            && Arc::ptr_eq(&c.table, table)
            && Arc::ptr_eq(&c.at, &s.at)
        {
            out.extend_from_slice(&c.json);
            return;
        }
        let mut json = Vec::with_capacity(256);
        serde_into(&mut json, &SourceJson(env));
        out.extend_from_slice(&json);
        *cache = Some(Cached {
            tx: ev.tx.clone(),
            table: table.clone(),
            at: s.at.clone(),
            json,
        });
    }

    /// The envelope of a row event, as `Envelope`'s serde path writes it.
    pub(super) fn write_envelope(&self, env: &Envelope<'_>, out: &mut Vec<u8>) {
        let ev = env.ev;
        out.extend_from_slice(b"{\"before\":");
        self.write_image(out, ev, ev.before.as_ref());
        out.extend_from_slice(b",\"after\":");
        self.write_image(out, ev, ev.after.as_ref());
        out.extend_from_slice(b",\"source\":");
        self.write_source(out, env);
        out.extend_from_slice(b",\"transaction\":");
        if self.transaction_metadata() && ev.tx.snapshot.is_none() {
            serde_into(out, &TransactionJson(ev));
        } else {
            out.extend_from_slice(b"null");
        }
        out.extend_from_slice(b",\"op\":\"");
        out.extend_from_slice(ev.op.code().as_bytes());
        // (closing quote written below, with the cached times)
        out.push(b'"');
        let mut caches = self
            .source_cache
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &caches.ts {
            Some((ns, bytes)) if *ns == env.now_ns => out.extend_from_slice(bytes),
            _ => {
                let mut bytes = Vec::with_capacity(80);
                bytes.extend_from_slice(b",\"ts_ms\":");
                write_i64(&mut bytes, env.now_ns / 1_000_000);
                bytes.extend_from_slice(b",\"ts_us\":");
                write_i64(&mut bytes, env.now_ns / 1_000);
                bytes.extend_from_slice(b",\"ts_ns\":");
                write_i64(&mut bytes, env.now_ns);
                out.extend_from_slice(&bytes);
                caches.ts = Some((env.now_ns, bytes));
            }
        }
        out.extend_from_slice(b",\"position\":");
        match &ev.position {
            Position::Snapshot(s) if s.row != Position::END => {
                let fresh = !matches!(&caches.position, Some((at, seq, _)) if Arc::ptr_eq(at, &s.at) && *seq == s.seq);
                if fresh {
                    let mut prefix = Vec::with_capacity(64);
                    prefix.push(b'"');
                    prefix.extend_from_slice(b"snapshot:");
                    write_position_text(&mut prefix, &s.at);
                    prefix.push(b':');
                    write_u64(&mut prefix, s.seq);
                    prefix.push(b':');
                    if prefix.iter().skip(1).any(|&b| needs_escape(b)) {
                        caches.position = None;
                        write_position(out, &ev.position);
                        out.push(b'}');
                        return;
                    }
                    caches.position = Some((s.at.clone(), s.seq, prefix));
                }
                if let Some((_, _, prefix)) = &caches.position {
                    out.extend_from_slice(prefix);
                    write_u64(out, s.row);
                    out.push(b'"');
                }
            }
            p => write_position(out, p),
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_serde_json_escapes_them() {
        let mut all = String::new();
        for c in 0u8..0x80 {
            all.push(char::from(c));
        }
        for s in [
            "",
            "plain text longer than eight bytes",
            "a\"b\\c",
            "line1\nline2 \"quoted\" \\ backslash",
            "🦀 tide 🌊 ünï",
            &all,
            "\u{7f}\u{80}\u{ffff}",
            "12345678\"",
            "1234567\u{1f}",
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_word_check_finds_every_special_byte_at_every_offset() {
        for special in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = special;
                assert!(
                    word_needs_escape(u64::from_le_bytes(w)),
                    "{special} at {at}"
                );
            }
        }
        for b in (0x20u8..=0xff).filter(|&b| b != b'"' && b != b'\\') {
            assert!(!word_needs_escape(u64::from_le_bytes([b; 8])), "{b}");
        }
    }
}
