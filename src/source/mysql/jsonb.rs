//! MySQL's binary JSON (the `JSON` column type of MySQL 5.7+) → JSON text,
//! and MySQL 8's partial JSON updates (`binlog_row_value_options=PARTIAL_JSON`).
//!
//! Format: sql-common/json_binary.h in the MySQL sources. Every offset is
//! checked; a malformed document is a [`DecodeError`]. Opaque values are
//! rendered as MySQL renders them: DECIMAL as a number, temporal types as
//! quoted strings.

use std::fmt::Write as _;

use super::reader::{DecodeError, Reader};
use super::rows::decode_decimal;
use crate::event::value::{write_fraction, write_hms};

/// A decoded JSON document. Numbers keep their exact text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

const SMALL_OBJECT: u8 = 0x00;
const LARGE_OBJECT: u8 = 0x01;
const SMALL_ARRAY: u8 = 0x02;
const LARGE_ARRAY: u8 = 0x03;
const LITERAL: u8 = 0x04;
const INT16: u8 = 0x05;
const UINT16: u8 = 0x06;
const INT32: u8 = 0x07;
const UINT32: u8 = 0x08;
const INT64: u8 = 0x09;
const UINT64: u8 = 0x0a;
const DOUBLE: u8 = 0x0b;
const STRING: u8 = 0x0c;
const OPAQUE: u8 = 0x0f;

/// Nesting limit, as MySQL's (JSON_DOCUMENT_MAX_DEPTH = 100), so that a
/// hostile document can't exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Decodes a binary JSON document into text (`{"a": 1, "b": [true, null]}`,
/// MySQL's spacing). An empty value is JSON null, as in MySQL.
pub fn to_text(bytes: &[u8]) -> Result<String, DecodeError> {
    let doc = decode(bytes)?;
    let mut out = String::with_capacity(bytes.len() + 16);
    render(&doc, &mut out);
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<Json, DecodeError> {
    let Some((&ty, body)) = bytes.split_first() else {
        return Ok(Json::Null);
    };
    value(ty, body, 0)
}

fn value(ty: u8, data: &[u8], depth: usize) -> Result<Json, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError {
            what: "JSON nested deeper than 100 levels".into(),
            offset: 0,
        });
    }
    let mut r = Reader::new(data);
    Ok(match ty {
        SMALL_OBJECT | LARGE_OBJECT => container(data, ty == LARGE_OBJECT, true, depth)?,
        SMALL_ARRAY | LARGE_ARRAY => container(data, ty == LARGE_ARRAY, false, depth)?,
        LITERAL => literal(r.u8("JSON literal")?, &r)?,
        INT16 => Json::Number((r.uint_le(2, "JSON int16")? as u16 as i16).to_string()),
        UINT16 => Json::Number(r.uint_le(2, "JSON uint16")?.to_string()),
        INT32 => Json::Number((r.uint_le(4, "JSON int32")? as u32 as i32).to_string()),
        UINT32 => Json::Number(r.uint_le(4, "JSON uint32")?.to_string()),
        INT64 => Json::Number((r.uint_le(8, "JSON int64")? as i64).to_string()),
        UINT64 => Json::Number(r.uint_le(8, "JSON uint64")?.to_string()),
        DOUBLE => {
            let d = f64::from_bits(r.uint_le(8, "JSON double")?);
            Json::Number(serde_json::to_string(&d).unwrap_or_else(|_| "null".into()))
        }
        STRING => {
            let n = varlen(&mut r)?;
            let b = r.take(n, "JSON string")?;
            Json::String(utf8(b, &r)?)
        }
        OPAQUE => {
            let field_type = r.u8("JSON opaque type")?;
            let n = varlen(&mut r)?;
            opaque(field_type, r.take(n, "JSON opaque value")?)?
        }
        other => return Err(r.err(format!("unknown JSON value type {other:#x}"))),
    })
}

fn literal(b: u8, r: &Reader<'_>) -> Result<Json, DecodeError> {
    match b {
        0 => Ok(Json::Null),
        1 => Ok(Json::Bool(true)),
        2 => Ok(Json::Bool(false)),
        x => Err(r.err(format!("unknown JSON literal {x:#x}"))),
    }
}

fn utf8(b: &[u8], r: &Reader<'_>) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| r.err("JSON string is not UTF-8"))
}

/// Variable-length unsigned integer: 7 bits per byte, low bits first.
fn varlen(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let mut n: u64 = 0;
    for i in 0..5 {
        let b = r.u8("JSON length")?;
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return usize::try_from(n).map_err(|_| r.err("JSON length overflows"));
        }
    }
    Err(r.err("JSON length longer than 5 bytes"))
}

/// Object or array: element count and size, then key entries (objects),
/// value entries, keys and values; offsets are relative to `data`.
fn container(data: &[u8], large: bool, object: bool, depth: usize) -> Result<Json, DecodeError> {
    let w = if large { 4 } else { 2 };
    let mut r = Reader::new(data);
    let count = r.uint_le(w, "JSON element count")? as usize;
    let size = r.uint_le(w, "JSON size")? as usize;
    if size > data.len() {
        return Err(r.err(format!(
            "JSON container size {size} exceeds the {} bytes available",
            data.len()
        )));
    }
    let data = &data[..size];
    let header = 2 * w + count.saturating_mul(if object { w + 2 + 1 + w } else { 1 + w });
    if header > size {
        return Err(r.err(format!(
            "JSON container of {count} elements doesn't fit in {size} bytes"
        )));
    }
    let mut keys = Vec::with_capacity(if object { count } else { 0 });
    if object {
        for _ in 0..count {
            let off = r.uint_le(w, "JSON key offset")? as usize;
            let len = r.uint_le(2, "JSON key length")? as usize;
            let k = data
                .get(off..off.saturating_add(len))
                .ok_or_else(|| r.err("JSON key outside its object"))?;
            keys.push(utf8(k, &r)?);
        }
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let ty = r.u8("JSON value type")?;
        let inlined =
            matches!(ty, LITERAL | INT16 | UINT16) || (large && matches!(ty, INT32 | UINT32));
        if inlined {
            let raw = r.take(w, "JSON inlined value")?;
            values.push(value(ty, raw, depth + 1)?);
        } else {
            let off = r.uint_le(w, "JSON value offset")? as usize;
            let v = data
                .get(off..)
                .filter(|_| off >= header)
                .ok_or_else(|| r.err("JSON value offset outside its container"))?;
            values.push(value(ty, v, depth + 1)?);
        }
    }
    Ok(if object {
        Json::Object(keys.into_iter().zip(values).collect())
    } else {
        Json::Array(values)
    })
}

/// Renders an opaque value (a MySQL column type inside JSON) as MySQL does.
fn opaque(field_type: u8, b: &[u8]) -> Result<Json, DecodeError> {
    let r = Reader::new(b);
    match field_type {
        // NEWDECIMAL: precision, scale, then the binary decimal.
        246 => {
            let mut r = Reader::new(b);
            let p = r.u8("JSON decimal precision")?;
            let s = r.u8("JSON decimal scale")?;
            Ok(Json::Number(decode_decimal(&mut r, p, s)?))
        }
        // DATE, DATETIME, TIMESTAMP (and DATETIME2/TIMESTAMP2), TIME: a packed int64.
        10 | 12 | 7 | 17 | 18 | 11 | 19 => {
            let packed = Reader::new(b).uint_le(8, "JSON temporal")? as i64;
            Ok(Json::String(packed_temporal(field_type, packed)))
        }
        _ => {
            // Other opaque types (e.g. BLOB in JSON): MySQL prints base64.
            use base64::Engine as _;
            let _ = r;
            Ok(Json::String(format!(
                "base64:type{field_type}:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )))
        }
    }
}

/// Text of a packed temporal (MySQL's TIME_to_longlong_*_packed formats).
fn packed_temporal(field_type: u8, packed: i64) -> String {
    let neg = packed < 0;
    let p = packed.unsigned_abs();
    let frac = p % (1 << 24);
    let int = p >> 24;
    let mut out = String::with_capacity(26);
    if matches!(field_type, 11 | 19) {
        if neg {
            out.push('-');
        }
        let hms = int;
        let secs = ((hms >> 12) % (1 << 10)) * 3600 + ((hms >> 6) % 64) * 60 + hms % 64;
        write_hms(
            &mut out,
            secs * 1_000_000 + frac,
            if frac == 0 { 0 } else { 6 },
        );
        return out;
    }
    let ymd = int >> 17;
    let ym = ymd >> 5;
    let hms = int % (1 << 17);
    let _ = write!(out, "{:04}-{:02}-{:02}", ym / 13, ym % 13, ymd % 32);
    if field_type != 10 {
        let _ = write!(
            out,
            " {:02}:{:02}:{:02}",
            hms >> 12,
            (hms >> 6) % 64,
            hms % 64
        );
        if frac != 0 {
            write_fraction(&mut out, frac, 6);
        }
    }
    out
}

/// Writes `doc` as JSON text with MySQL's spacing (`", "` and `": "`).
pub fn render(doc: &Json, out: &mut String) {
    match doc {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(v, out);
            }
            out.push(']');
        }
        Json::Object(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, out);
                out.push_str(": ");
                render(v, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// One operation of a partial JSON update.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDiff {
    pub op: DiffOp,
    pub path: Vec<PathLeg>,
    pub value: Option<Json>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffOp {
    Replace,
    Insert,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathLeg {
    Key(String),
    Index(usize),
}

/// Decodes the diff list of a partial JSON column value.
pub fn decode_diffs(bytes: &[u8]) -> Result<Vec<JsonDiff>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let op = match r.u8("JSON diff operation")? {
            0 => DiffOp::Replace,
            1 => DiffOp::Insert,
            2 => DiffOp::Remove,
            x => return Err(r.err(format!("unknown JSON diff operation {x}"))),
        };
        let n = r.lenenc("JSON diff path length")? as usize;
        let path_text = utf8(r.take(n, "JSON diff path")?, &r)?;
        let path = parse_path(&path_text).map_err(|e| r.err(e))?;
        let value = if op == DiffOp::Remove {
            None
        } else {
            let n = r.lenenc("JSON diff value length")? as usize;
            Some(decode(r.take(n, "JSON diff value")?)?)
        };
        out.push(JsonDiff { op, path, value });
    }
    Ok(out)
}

/// Parses the normalized paths MySQL writes: `$`, `.key`, `."quoted key"`, `[n]`.
pub fn parse_path(text: &str) -> Result<Vec<PathLeg>, String> {
    let bad = || format!("unsupported JSON path {text:?}");
    let mut rest = text.strip_prefix('$').ok_or_else(bad)?;
    let mut legs = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            if let Some(q) = r.strip_prefix('"') {
                // Quoted key with backslash escapes: read it as a JSON string.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in q.char_indices() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => {
                            end = Some(i);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                let end = end.ok_or_else(bad)?;
                let key: String =
                    serde_json::from_str(&format!("\"{}\"", &q[..end])).map_err(|_| bad())?;
                legs.push(PathLeg::Key(key));
                rest = &q[end + 1..];
            } else {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                if end == 0 {
                    return Err(bad());
                }
                legs.push(PathLeg::Key(r[..end].to_string()));
                rest = &r[end..];
            }
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            legs.push(PathLeg::Index(r[..end].trim().parse().map_err(|_| bad())?));
            rest = &r[end + 1..];
        } else {
            return Err(bad());
        }
    }
    Ok(legs)
}

/// Applies partial-update operations to the before image, as the server did.
pub fn apply_diffs(mut doc: Json, diffs: &[JsonDiff]) -> Result<Json, String> {
    for d in diffs {
        let Some((last, parent_path)) = d.path.split_last() else {
            // The whole document.
            match (&d.op, &d.value) {
                (DiffOp::Replace, Some(v)) => doc = v.clone(),
                _ => return Err("JSON diff on the document root".into()),
            }
            continue;
        };
        let parent = walk(&mut doc, parent_path)
            .ok_or_else(|| format!("JSON diff path {:?} not in the before image", d.path))?;
        match (d.op, parent, last) {
            (DiffOp::Remove, Json::Object(f), PathLeg::Key(k)) => f.retain(|(fk, _)| fk != k),
            (DiffOp::Remove, Json::Array(a), PathLeg::Index(i)) if *i < a.len() => {
                a.remove(*i);
            }
            (_, Json::Object(f), PathLeg::Key(k)) => {
                let v = d.value.clone().unwrap_or(Json::Null);
                match f.iter_mut().find(|(fk, _)| fk == k) {
                    Some(slot) => slot.1 = v,
                    None => f.push((k.clone(), v)),
                }
            }
            (DiffOp::Replace, Json::Array(a), PathLeg::Index(i)) if *i < a.len() => {
                a[*i] = d.value.clone().unwrap_or(Json::Null);
            }
            (DiffOp::Insert, Json::Array(a), PathLeg::Index(i)) => {
                let i = (*i).min(a.len());
                a.insert(i, d.value.clone().unwrap_or(Json::Null));
            }
            _ => {
                return Err(format!(
                    "JSON diff path {:?} doesn't fit the before image",
                    d.path
                ));
            }
        }
    }
    Ok(doc)
}

fn walk<'a>(doc: &'a mut Json, path: &[PathLeg]) -> Option<&'a mut Json> {
    let mut cur = doc;
    for leg in path {
        cur = match (cur, leg) {
            (Json::Object(f), PathLeg::Key(k)) => &mut f.iter_mut().find(|(fk, _)| fk == k)?.1,
            (Json::Array(a), PathLeg::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Test-only encoder of binary JSON, following json_binary.h, used to build
/// the MySQL 8 bytes this machine has no server to capture from.
#[cfg(test)]
pub mod encode {
    use super::*;

    pub fn doc(j: &Json) -> Vec<u8> {
        let (ty, body) = value(j, true);
        let mut out = vec![ty];
        out.extend(body);
        out
    }

    fn varlen(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// (type, bytes) of a value; containers use the large format when `large`.
    pub fn value(j: &Json, large: bool) -> (u8, Vec<u8>) {
        match j {
            Json::Null => (LITERAL, vec![0]),
            Json::Bool(b) => (LITERAL, vec![if *b { 1 } else { 2 }]),
            Json::Number(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    (INT64, i.to_le_bytes().to_vec())
                } else if let Ok(u) = n.parse::<u64>() {
                    (UINT64, u.to_le_bytes().to_vec())
                } else {
                    (DOUBLE, n.parse::<f64>().unwrap().to_le_bytes().to_vec())
                }
            }
            Json::String(s) => {
                let mut out = Vec::new();
                varlen(s.len(), &mut out);
                out.extend_from_slice(s.as_bytes());
                (STRING, out)
            }
            Json::Array(items) => {
                let entries: Vec<(Option<&str>, &Json)> = items.iter().map(|v| (None, v)).collect();
                (
                    if large { LARGE_ARRAY } else { SMALL_ARRAY },
                    container(&entries, large),
                )
            }
            Json::Object(fields) => {
                let entries: Vec<(Option<&str>, &Json)> =
                    fields.iter().map(|(k, v)| (Some(k.as_str()), v)).collect();
                (
                    if large { LARGE_OBJECT } else { SMALL_OBJECT },
                    container(&entries, large),
                )
            }
        }
    }

    fn container(entries: &[(Option<&str>, &Json)], large: bool) -> Vec<u8> {
        let w = if large { 4 } else { 2 };
        let object = entries.first().is_some_and(|(k, _)| k.is_some());
        let n = entries.len();
        let header = 2 * w + n * if object { w + 2 + 1 + w } else { 1 + w };
        let mut keys = Vec::new();
        let mut key_entries = Vec::new();
        let keys_len: usize = entries.iter().map(|(k, _)| k.map_or(0, str::len)).sum();
        let mut off = header;
        for (k, _) in entries {
            if let Some(k) = k {
                key_entries.extend_from_slice(&(off as u32).to_le_bytes()[..w]);
                key_entries.extend_from_slice(&(k.len() as u16).to_le_bytes());
                keys.extend_from_slice(k.as_bytes());
                off += k.len();
            }
        }
        let mut value_entries = Vec::new();
        let mut values = Vec::new();
        let mut voff = header + keys_len;
        for (_, v) in entries {
            let (ty, body) = value(v, large);
            value_entries.push(ty);
            if ty == LITERAL {
                let mut inl = body.clone();
                inl.resize(w, 0);
                value_entries.extend_from_slice(&inl);
            } else {
                value_entries.extend_from_slice(&(voff as u32).to_le_bytes()[..w]);
                voff += body.len();
                values.extend(body);
            }
        }
        let size = voff;
        let mut out = Vec::new();
        out.extend_from_slice(&(n as u32).to_le_bytes()[..w]);
        out.extend_from_slice(&(size as u32).to_le_bytes()[..w]);
        out.extend(key_entries);
        out.extend(value_entries);
        out.extend(keys);
        out.extend(values);
        out
    }
}

#[cfg(test)]
#[path = "jsonb_tests.rs"]
mod tests;
