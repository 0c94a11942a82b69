//! Arrays in PostgreSQL's text syntax: `{1,2}`, `{{"a b",NULL},{"\"q\"",c}}`,
//! `[0:1]={1,2}`, `{}`.
//!
//! Elements are decoded with the element type, recursively. Explicit lower
//! bounds are checked against the data but not kept: [`Array`] has no place
//! for them.

use super::{PgType, TypeError, decode_text};
use crate::event::value::{Array, Value};

/// PostgreSQL's MAXDIM; also bounds the parser's recursion.
const MAX_DIMS: usize = 6;

pub(super) fn decode(
    ty: &PgType,
    elem: &PgType,
    delimiter: u8,
    text: &[u8],
) -> Result<Value, TypeError> {
    let mut p = Parser {
        ty,
        s: text,
        pos: 0,
        delimiter,
        elem,
        dims: [None; MAX_DIMS],
        leaf_depth: None,
        elements: Vec::new(),
    };
    let err = |reason| TypeError::new(ty, text, reason);
    let bounds = p.bounds().map_err(err)?;
    p.skip_spaces();
    p.level(0)?;
    p.skip_spaces();
    if p.pos != text.len() {
        return Err(err("unexpected text after the array"));
    }
    let ndims = p.leaf_depth.map_or(0, |d| d + 1);
    let dims: Vec<u32> = p.dims.iter().take(ndims).map(|d| d.unwrap_or(0)).collect();
    if let Some(bounds) = bounds {
        let matches = bounds.len() == dims.len()
            && bounds.iter().zip(&dims).all(|(&(lower, upper), &len)| {
                upper.checked_sub(lower).and_then(|n| n.checked_add(1)) == Some(i64::from(len))
            });
        if !matches {
            return Err(err("dimensions do not match the bounds"));
        }
    }
    Ok(Value::Array(Box::new(Array {
        dims,
        elements: p.elements,
    })))
}

struct Parser<'a> {
    /// The array type, for errors.
    ty: &'a PgType,
    s: &'a [u8],
    pos: usize,
    delimiter: u8,
    elem: &'a PgType,
    /// Length of each dimension, set by the first sub-array seen at that depth.
    dims: [Option<u32>; MAX_DIMS],
    /// Depth at which the elements sit; all of them must sit at the same depth.
    leaf_depth: Option<usize>,
    elements: Vec<Value>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek();
        if b.is_some() {
            self.pos += 1;
        }
        b
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn err(&self, reason: &'static str) -> TypeError {
        TypeError::new(self.ty, self.s, reason)
    }

    /// The optional `[lower:upper]...=` prefix.
    fn bounds(&mut self) -> Result<Option<Vec<(i64, i64)>>, &'static str> {
        self.skip_spaces();
        if self.peek() != Some(b'[') {
            return Ok(None);
        }
        let mut bounds = Vec::new();
        while self.peek() == Some(b'[') {
            if bounds.len() == MAX_DIMS {
                return Err("too many dimensions");
            }
            self.pos += 1;
            let lower = self.int()?;
            if self.bump() != Some(b':') {
                return Err("expected ':' in the bounds");
            }
            let upper = self.int()?;
            if self.bump() != Some(b']') {
                return Err("expected ']' in the bounds");
            }
            bounds.push((lower, upper));
        }
        if self.bump() != Some(b'=') {
            return Err("expected '=' after the bounds");
        }
        Ok(Some(bounds))
    }

    fn int(&mut self) -> Result<i64, &'static str> {
        let start = self.pos;
        if self.peek() == Some(b'-') || self.peek() == Some(b'+') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits = self.s.get(start..self.pos).unwrap_or_default();
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or("invalid bound")
    }

    /// One `{...}` at `depth`, its sub-arrays or elements appended in order.
    fn level(&mut self, depth: usize) -> Result<(), TypeError> {
        if depth >= MAX_DIMS {
            return Err(self.err("too many dimensions"));
        }
        if self.bump() != Some(b'{') {
            return Err(self.err("expected '{'"));
        }
        self.skip_spaces();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            // Only a whole array can be empty; `{{},{}}` is not an array.
            return if depth == 0 {
                Ok(())
            } else {
                Err(self.err("empty sub-array"))
            };
        }
        let mut count: u32 = 0;
        loop {
            self.skip_spaces();
            if self.peek() == Some(b'{') {
                if self.leaf_depth.is_some_and(|d| d <= depth) {
                    return Err(self.err("sub-arrays and elements mixed"));
                }
                self.level(depth + 1)?;
            } else {
                match self.leaf_depth {
                    None => self.leaf_depth = Some(depth),
                    Some(d) if d != depth => return Err(self.err("sub-arrays and elements mixed")),
                    Some(_) => {}
                }
                let value = self.element()?;
                self.elements.push(value);
            }
            count = count
                .checked_add(1)
                .ok_or_else(|| self.err("too many elements"))?;
            self.skip_spaces();
            match self.bump() {
                Some(b'}') => break,
                Some(b) if b == self.delimiter => {}
                _ => return Err(self.err("expected a delimiter or '}'")),
            }
        }
        match self.dims.get_mut(depth) {
            Some(slot @ None) => *slot = Some(count),
            Some(Some(n)) if *n == count => {}
            Some(Some(_)) => return Err(self.err("sub-arrays of different lengths")),
            None => return Err(self.err("too many dimensions")),
        }
        Ok(())
    }

    /// A quoted or unquoted element; unquoted `NULL` (any case) is a null.
    fn element(&mut self) -> Result<Value, TypeError> {
        let mut text = Vec::new();
        if self.peek() == Some(b'"') {
            self.pos += 1;
            loop {
                match self.bump() {
                    None => return Err(self.err("unterminated quoted element")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let b = self.bump().ok_or_else(|| self.err("dangling backslash"))?;
                        text.push(b);
                    }
                    Some(b) => text.push(b),
                }
            }
            return decode_text(self.elem, &text);
        }
        // Unquoted: trailing spaces are not part of the element unless escaped.
        let mut significant = 0;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated array")),
                Some(b'}') => break,
                Some(b) if b == self.delimiter => break,
                Some(b'{' | b'"') => return Err(self.err("unexpected character in element")),
                Some(b'\\') => {
                    self.pos += 1;
                    let b = self.bump().ok_or_else(|| self.err("dangling backslash"))?;
                    text.push(b);
                    significant = text.len();
                    escaped = true;
                }
                Some(b) => {
                    self.pos += 1;
                    text.push(b);
                    if !b.is_ascii_whitespace() {
                        significant = text.len();
                    }
                }
            }
        }
        text.truncate(significant);
        if text.is_empty() {
            return Err(self.err("empty unquoted element"));
        }
        if !escaped && text.eq_ignore_ascii_case(b"NULL") {
            return Ok(Value::Null);
        }
        decode_text(self.elem, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PgKind, builtin};
    use super::*;

    fn arr(dims: &[u32], elements: Vec<Value>) -> Result<Value, TypeError> {
        Ok(Value::Array(Box::new(Array {
            dims: dims.to_vec(),
            elements,
        })))
    }

    fn dec(oid: u32, text: &str) -> Result<Value, TypeError> {
        let ty = builtin(oid, -1).filter(|t| matches!(t.kind, PgKind::Array(_)));
        decode_text(&ty.expect("an array type"), text.as_bytes())
    }

    fn ints(v: &[i64]) -> Vec<Value> {
        v.iter().map(|&i| Value::Int(i)).collect()
    }

    fn texts(v: &[&str]) -> Vec<Value> {
        v.iter().map(|s| Value::Text(s.to_string())).collect()
    }

    #[test]
    fn one_and_more_dimensions() {
        assert_eq!(dec(1007, "{1,2,3}"), arr(&[3], ints(&[1, 2, 3])));
        assert_eq!(
            dec(1007, "{{1,2},{3,4}}"),
            arr(&[2, 2], ints(&[1, 2, 3, 4]))
        );
        assert_eq!(
            dec(1016, "{{{1},{2},{3}},{{4},{5},{6}}}"),
            arr(&[2, 3, 1], ints(&[1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(dec(1007, "{}"), arr(&[], vec![]));
        assert_eq!(dec(1007, " { 1 , 2 } "), arr(&[2], ints(&[1, 2])));
    }

    #[test]
    fn nulls_quotes_and_escapes() {
        assert_eq!(
            dec(1009, r#"{NULL,null,"NULL",nUlL,"",\NULL}"#),
            arr(
                &[6],
                vec![
                    Value::Null,
                    Value::Null,
                    Value::Text("NULL".into()),
                    Value::Null,
                    Value::Text(String::new()),
                    Value::Text("NULL".into()),
                ]
            )
        );
        assert_eq!(
            dec(1009, r#"{"a b","q\"uote","back\\slash","{br,ces}",plain}"#),
            arr(
                &[5],
                texts(&["a b", "q\"uote", "back\\slash", "{br,ces}", "plain"])
            )
        );
        assert_eq!(
            dec(1009, r#"{a\,b,"  x  ",  y z  }"#),
            arr(&[3], texts(&["a,b", "  x  ", "y z"]))
        );
        assert_eq!(dec(1009, r#"{a\ }"#), arr(&[1], texts(&["a "])));
        assert_eq!(
            dec(1014, r#"{"ab  ","c   "}"#),
            arr(&[2], texts(&["ab  ", "c   "]))
        );
        assert_eq!(
            dec(1007, "{1,NULL}"),
            arr(&[2], vec![Value::Int(1), Value::Null])
        );
    }

    #[test]
    fn explicit_bounds_are_checked() {
        assert_eq!(dec(1007, "[0:1]={1,2}"), arr(&[2], ints(&[1, 2])));
        assert_eq!(
            dec(1007, "[-2:-1][1:2]={{1,2},{3,4}}"),
            arr(&[2, 2], ints(&[1, 2, 3, 4]))
        );
        for s in [
            "[0:2]={1,2}",
            "[0:1]{1,2}",
            "[0:1][1:1]={1,2}",
            "[0]={1}",
            "[a:b]={1}",
            "[1:1]={}",
        ] {
            assert!(dec(1007, s).is_err(), "{s}");
        }
    }

    #[test]
    fn elements_use_the_element_type() {
        assert_eq!(
            dec(1182, "{2024-01-02,infinity}"),
            arr(
                &[2],
                vec![
                    Value::Date(crate::event::value::Date {
                        year: 2024,
                        month: 1,
                        day: 2
                    }),
                    Value::Infinite {
                        kind: crate::event::value::InfiniteKind::Date,
                        negative: false
                    }
                ]
            )
        );
        let Ok(Value::Array(a)) = dec(1115, r#"{"2024-01-02 03:04:05.5"}"#) else {
            panic!("not an array");
        };
        assert!(matches!(
            a.elements.as_slice(),
            [Value::DateTime(dt)] if dt.micros_of_day == 11_045_500_000
        ));
        assert_eq!(
            dec(1001, r#"{"\\x00ff",NULL}"#),
            arr(&[2], vec![Value::Bytes(vec![0, 0xff]), Value::Null])
        );
        assert_eq!(
            dec(1000, "{t,f}"),
            arr(&[2], vec![Value::Bool(true), Value::Bool(false)])
        );
        let err = dec(1007, "{1,x}").err();
        assert_eq!(
            err.map(|e| (e.type_name, e.text)),
            Some(("int4".into(), "x".into()))
        );
    }

    #[test]
    fn box_arrays_use_semicolons() {
        assert_eq!(
            dec(1020, "{(1,1),(0,0);(2,2),(1,1)}"),
            arr(
                &[2],
                vec![
                    Value::Other("(1,1),(0,0)".into()),
                    Value::Other("(2,2),(1,1)".into())
                ]
            )
        );
    }

    #[test]
    fn malformed_arrays_are_errors() {
        let deep = format!("{}1{}", "{".repeat(7), "}".repeat(7));
        for s in [
            "",
            "1,2",
            "{1,2",
            "{1,2}}",
            "{1,,2}",
            "{1,2,}",
            "{{1,2},{3}}",
            "{{1},2}",
            "{1,{2}}",
            "{{},{}}",
            r#"{"a}"#,
            r#"{a"b"}"#,
            "{1}x",
            r"{1\",
            &deep,
        ] {
            assert!(dec(1007, s).is_err(), "{s}");
        }
        let six = format!("{}1{}", "{".repeat(6), "}".repeat(6));
        assert_eq!(dec(1007, &six), arr(&[1; 6], ints(&[1])));
    }
}
