//! Same-engine DDL under a database map: the statement's database
//! qualifiers (`shop.orders`, `` `shop`.`orders` ``) renamed to the target
//! database, outside string literals and comments.

/// Rewrites every identifier that qualifies another (`x.`) and equals
/// `from` into `to`, quoted. Text in quotes and comments is left alone.
pub fn rename_db(sql: &str, from: &str, to: &str) -> String {
    if from == to {
        return sql.to_string();
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    let quoted_to = format!("`{}`", to.replace('`', "``"));
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = skip_string(b, i);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(b.len(), |e| i + e);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'#' => {
                let end = sql[i..].find('\n').map_or(b.len(), |e| i + e);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'`' => {
                // A quoted identifier: `` `a``b` ``.
                let mut j = i + 1;
                let mut name = String::new();
                while j < b.len() {
                    if b[j] == b'`' {
                        if b.get(j + 1) == Some(&b'`') {
                            name.push('`');
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    let ch_end = next_char(sql, j);
                    name.push_str(&sql[j..ch_end]);
                    j = ch_end;
                }
                let end = (j + 1).min(b.len());
                if name == from && qualifies(b, end) {
                    out.push_str(&quoted_to);
                } else {
                    out.push_str(&sql[i..end]);
                }
                i = end;
            }
            c if is_ident(c) && (i == 0 || !is_ident(b[i - 1]) && b[i - 1] != b'.') => {
                let mut j = i;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                if &sql[i..j] == from && qualifies(b, j) {
                    out.push_str(&quoted_to);
                } else {
                    out.push_str(&sql[i..j]);
                }
                i = j;
            }
            _ => {
                let e = next_char(sql, i);
                out.push_str(&sql[i..e]);
                i = e;
            }
        }
    }
    out
}

fn next_char(s: &str, i: usize) -> usize {
    let mut e = i + 1;
    while e < s.len() && !s.is_char_boundary(e) {
        e += 1;
    }
    e
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The identifier ending at `end` is followed by `.` and another name.
fn qualifies(b: &[u8], end: usize) -> bool {
    b.get(end) == Some(&b'.')
        && b.get(end + 1)
            .is_some_and(|&c| c == b'`' || is_ident(c) || c == b'*')
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut j = start + 1;
    while j < b.len() {
        if b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::rename_db;

    #[test]
    fn qualifiers_are_renamed_and_nothing_else() {
        assert_eq!(
            rename_db("ALTER TABLE shop.orders ADD COLUMN shop INT", "shop", "dr"),
            "ALTER TABLE `dr`.orders ADD COLUMN shop INT"
        );
        assert_eq!(
            rename_db(
                "CREATE TABLE `shop`.`t` LIKE shop.u /* shop.x */ COMMENT 'shop.y'",
                "shop",
                "dr"
            ),
            "CREATE TABLE `dr`.`t` LIKE `dr`.u /* shop.x */ COMMENT 'shop.y'"
        );
        assert_eq!(
            rename_db("RENAME TABLE myshop.a TO shop.b", "shop", "dr"),
            "RENAME TABLE myshop.a TO `dr`.b"
        );
        assert_eq!(
            rename_db(
                "CREATE TABLE t (v VARCHAR(9) DEFAULT 'it''s shop.t')",
                "shop",
                "dr"
            ),
            "CREATE TABLE t (v VARCHAR(9) DEFAULT 'it''s shop.t')"
        );
        assert_eq!(
            rename_db("DROP TABLE x.shop.t", "shop", "dr"),
            "DROP TABLE x.shop.t"
        );
    }
}
