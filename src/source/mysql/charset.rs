//! Character sets of MySQL/MariaDB string columns.
//!
//! Binlog metadata gives each text column a collation id; the server's own
//! `information_schema.COLLATIONS` maps ids to character sets (ids differ
//! between MySQL and MariaDB), with a built-in table for the common ones as
//! a fallback.

use std::collections::HashMap;

use encoding_rs::Encoding;

/// How to turn a column's bytes into text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Charset {
    /// `binary`: the bytes are the value.
    Binary,
    Utf8,
    /// UTF-32 big-endian (`utf32`), which encoding_rs doesn't cover.
    Utf32,
    Other(&'static Encoding),
    /// A character set without a decoder here: the value is passed as bytes.
    Unsupported,
}

impl Charset {
    /// Maps a MySQL character set name.
    pub fn from_name(name: &str) -> Charset {
        use encoding_rs::*;
        match name.to_ascii_lowercase().as_str() {
            "binary" => Charset::Binary,
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
            // MySQL's latin1 is Windows-1252.
            "latin1" => Charset::Other(WINDOWS_1252),
            "latin2" => Charset::Other(ISO_8859_2),
            "latin5" => Charset::Other(WINDOWS_1254),
            "latin7" => Charset::Other(ISO_8859_13),
            "greek" => Charset::Other(ISO_8859_7),
            "hebrew" => Charset::Other(ISO_8859_8),
            "cp1250" => Charset::Other(WINDOWS_1250),
            "cp1251" => Charset::Other(WINDOWS_1251),
            "cp1256" => Charset::Other(WINDOWS_1256),
            "cp1257" => Charset::Other(WINDOWS_1257),
            "cp866" => Charset::Other(IBM866),
            "koi8r" => Charset::Other(KOI8_R),
            "koi8u" => Charset::Other(KOI8_U),
            "macroman" => Charset::Other(MACINTOSH),
            "tis620" => Charset::Other(WINDOWS_874),
            "gbk" | "gb2312" => Charset::Other(GBK),
            "gb18030" => Charset::Other(GB18030),
            "big5" => Charset::Other(BIG5),
            "sjis" | "cp932" => Charset::Other(SHIFT_JIS),
            "ujis" | "eucjpms" => Charset::Other(EUC_JP),
            "euckr" => Charset::Other(EUC_KR),
            "ucs2" | "utf16" => Charset::Other(UTF_16BE),
            "utf16le" => Charset::Other(UTF_16LE),
            "utf32" => Charset::Utf32,
            _ => Charset::Unsupported,
        }
    }

    /// Decodes `bytes`; `None` when they are not valid in this character set
    /// (the caller then keeps the bytes rather than guess).
    pub fn decode(&self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Charset::Other(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned()),
            Charset::Utf32 => {
                if !bytes.len().is_multiple_of(4) {
                    return None;
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect()
            }
            Charset::Binary | Charset::Unsupported => None,
        }
    }
}

/// Collation id → character set.
#[derive(Debug, Clone, Default)]
pub struct Collations {
    by_id: HashMap<u16, Charset>,
}

impl Collations {
    /// From `(id, character set name)` rows of `information_schema.COLLATIONS`.
    pub fn from_rows(rows: impl IntoIterator<Item = (u16, String)>) -> Self {
        let mut c = Collations::builtin();
        for (id, name) in rows {
            c.by_id.insert(id, Charset::from_name(&name));
        }
        c
    }

    /// The ids common to MySQL and MariaDB.
    pub fn builtin() -> Self {
        let mut by_id = HashMap::new();
        let mut put = |ids: &[u16], cs: Charset| {
            for &id in ids {
                by_id.insert(id, cs);
            }
        };
        put(&[63], Charset::Binary);
        put(
            &[5, 8, 15, 31, 47, 48, 49, 94],
            Charset::Other(encoding_rs::WINDOWS_1252),
        );
        put(&[11, 65], Charset::Utf8);
        put(&[33, 83], Charset::Utf8);
        put(&(192..=215).collect::<Vec<_>>(), Charset::Utf8);
        put(&[45, 46], Charset::Utf8);
        put(&(224..=247).collect::<Vec<_>>(), Charset::Utf8);
        put(&(255..=323).collect::<Vec<_>>(), Charset::Utf8);
        Collations { by_id }
    }

    pub fn get(&self, id: u16) -> Charset {
        self.by_id.get(&id).copied().unwrap_or(Charset::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_common_charsets() {
        let c = Collations::builtin();
        assert_eq!(c.get(8).decode(b"caf\xe9").unwrap(), "café");
        assert_eq!(c.get(45).decode("ünï 🦀".as_bytes()).unwrap(), "ünï 🦀");
        assert_eq!(c.get(45).decode(b"\xff"), None);
        assert_eq!(c.get(63).decode(b"x"), None);
        assert_eq!(
            Charset::from_name("gbk")
                .decode(b"\xc4\xe3\xba\xc3")
                .unwrap(),
            "你好"
        );
        assert_eq!(
            Charset::from_name("utf32")
                .decode(&[0, 0, 0, 0x41, 0, 1, 0xf9, 0x80])
                .unwrap(),
            "A🦀"
        );
        assert_eq!(Charset::from_name("ucs2").decode(&[0, 0x41]).unwrap(), "A");
        assert_eq!(Charset::from_name("swe7"), Charset::Unsupported);
    }

    #[test]
    fn server_rows_override_builtin() {
        let c = Collations::from_rows([(2048u16, "utf8mb4".to_string()), (8, "latin1".into())]);
        assert_eq!(c.get(2048), Charset::Utf8);
        assert_eq!(c.get(9999), Charset::Unsupported);
    }
}
