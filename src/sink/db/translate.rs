//! MySQL ALTER TABLE / RENAME TABLE translated for a PostgreSQL target:
//! the clauses whose meaning carries over (add, drop, rename and retype a
//! column; rename the table). Anything else is refused with the clause
//! named, so that the operator skips the statement and changes the target
//! by hand.

use super::apply::pg_ident;
use crate::event::{ColumnDef, ColumnDefault, Connector};

/// PostgreSQL statements for a MySQL `ALTER TABLE` or `RENAME TABLE` on
/// the table the target calls `schema.table`.
pub fn mysql_to_postgres(sql: &str, schema: &str, table: &str) -> Result<Vec<String>, String> {
    let target = format!("{}.{}", pg_ident(schema), pg_ident(table));
    let toks = tokens(sql);
    let up: Vec<String> = toks.iter().map(|t| t.to_ascii_uppercase()).collect();
    let word = |i: usize| up.get(i).map(String::as_str).unwrap_or("");
    if word(0) == "RENAME" && word(1) == "TABLE" {
        // RENAME TABLE a TO b (one pair).
        let to = toks.get(4).ok_or("RENAME TABLE without a new name")?;
        if toks.len() > 5 {
            return Err("RENAME TABLE of several tables".into());
        }
        return Ok(vec![format!(
            "ALTER TABLE {target} RENAME TO {}",
            pg_ident(&last_part(to))
        )]);
    }
    if word(0) != "ALTER" || word(1) != "TABLE" {
        return Err("not an ALTER TABLE or RENAME TABLE statement".into());
    }
    // Clauses after the table name, split at top-level commas.
    let mut out = Vec::new();
    for clause in toks[3.min(toks.len())..].split(|t| t == ",") {
        if clause.is_empty() {
            continue;
        }
        out.push(clause_sql(clause, &target)?);
    }
    if out.is_empty() {
        return Err("ALTER TABLE without a clause".into());
    }
    Ok(out)
}

fn clause_sql(c: &[String], target: &str) -> Result<String, String> {
    let up: Vec<String> = c.iter().map(|t| t.to_ascii_uppercase()).collect();
    let at = |i: usize| up.get(i).map(String::as_str).unwrap_or("");
    // Optional COLUMN after the verb.
    let skip_column = |i: usize| if at(i) == "COLUMN" { i + 1 } else { i };
    let name = |i: usize| {
        c.get(i)
            .map(|s| unquote(s))
            .ok_or("a column name is missing")
    };
    match at(0) {
        "ADD"
            if !matches!(
                at(1),
                "INDEX"
                    | "KEY"
                    | "UNIQUE"
                    | "PRIMARY"
                    | "CONSTRAINT"
                    | "FOREIGN"
                    | "FULLTEXT"
                    | "SPATIAL"
                    | "CHECK"
                    | "PARTITION"
            ) =>
        {
            let i = skip_column(1);
            let col = name(i)?;
            let ty = pg_type(&c[i + 1..])?;
            // The source's rows took the default, and no row event
            // carries them: the target's rows take it too.
            let default = super::create::postgres_default(default_of(&c[i + 1..]).as_ref(), &ty);
            Ok(format!(
                "ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {} {ty}{default}",
                pg_ident(&col)
            ))
        }
        "DROP"
            if !matches!(
                at(1),
                "INDEX" | "KEY" | "PRIMARY" | "FOREIGN" | "CONSTRAINT" | "CHECK" | "PARTITION"
            ) =>
        {
            let col = name(skip_column(1))?;
            Ok(format!(
                "ALTER TABLE {target} DROP COLUMN IF EXISTS {}",
                pg_ident(&col)
            ))
        }
        "RENAME" if at(1) == "COLUMN" => {
            let (from, to) = (name(2)?, name(4)?);
            Ok(format!(
                "ALTER TABLE {target} RENAME COLUMN {} TO {}",
                pg_ident(&from),
                pg_ident(&to)
            ))
        }
        "RENAME" if matches!(at(1), "TO" | "AS") || !at(1).is_empty() => {
            let i = if matches!(at(1), "TO" | "AS") { 2 } else { 1 };
            let to = c.get(i).ok_or("RENAME without a new name")?;
            Ok(format!(
                "ALTER TABLE {target} RENAME TO {}",
                pg_ident(&last_part(to))
            ))
        }
        "MODIFY" => {
            let i = skip_column(1);
            let col = name(i)?;
            let ty = pg_type(&c[i + 1..])?;
            Ok(retype(target, &col, &ty))
        }
        "CHANGE" => {
            let i = skip_column(1);
            let (from, to) = (name(i)?, name(i + 1)?);
            let ty = pg_type(&c[i + 2..])?;
            let mut sql = String::new();
            if from != to {
                sql.push_str(&format!(
                    "ALTER TABLE {target} RENAME COLUMN {} TO {}; ",
                    pg_ident(&from),
                    pg_ident(&to)
                ));
            }
            sql.push_str(&retype(target, &to, &ty));
            Ok(sql)
        }
        other => Err(format!(
            "the clause `{}` ({other}) is not translated",
            c.join(" ")
        )),
    }
}

fn retype(target: &str, col: &str, ty: &str) -> String {
    format!(
        "ALTER TABLE {target} ALTER COLUMN {c} TYPE {ty} USING {c}::text::{ty}",
        c = pg_ident(col)
    )
}

/// The PostgreSQL type for a MySQL column definition's tokens (type, then
/// attributes, which are left out: NULL-ness and defaults stay as the
/// target has them).
fn pg_type(def: &[String]) -> Result<String, String> {
    let stop = [
        "NOT",
        "NULL",
        "DEFAULT",
        "COMMENT",
        "AUTO_INCREMENT",
        "PRIMARY",
        "UNIQUE",
        "COLLATE",
        "CHARACTER",
        "CHARSET",
        "ON",
        "AFTER",
        "FIRST",
        "GENERATED",
        "AS",
        "CHECK",
        "REFERENCES",
        "INVISIBLE",
        "VISIBLE",
    ];
    let mut parts: Vec<String> = Vec::new();
    for t in def {
        if stop.contains(&t.to_ascii_uppercase().as_str()) {
            break;
        }
        parts.push(t.to_ascii_lowercase());
    }
    let text = parts
        .join(" ")
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")");
    if text.is_empty() {
        return Err("a column type is missing".into());
    }
    // Display widths (`int(11)`) say nothing about the values.
    let base = text
        .split(['(', ' '])
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string();
    let unsigned = text.contains("unsigned");
    let ints = [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
    ];
    let name = if ints.contains(&base.as_str()) {
        let b = if base == "integer" {
            "int"
        } else {
            base.as_str()
        };
        if unsigned {
            format!("{b} unsigned")
        } else {
            b.to_string()
        }
    } else {
        text.replace(" unsigned", "")
            .replace("zerofill", "")
            .trim()
            .to_string()
    };
    let name = match name.as_str() {
        n if n.starts_with("varchar") || n.starts_with("char") => "varchar".to_string(),
        n if n.starts_with("enum") => "enum".to_string(),
        n if n.starts_with("set") => "set".to_string(),
        n if n.ends_with("text") => "text".to_string(),
        n if n.ends_with("blob") => "blob".to_string(),
        n => n.to_string(),
    };
    let col = ColumnDef {
        name: String::new(),
        type_name: name,
        nullable: true,
    };
    super::create::postgres_type(Connector::Mariadb, &col, false)
}

/// The `DEFAULT` of a MySQL column definition's tokens, where portable:
/// a string or number constant, or the insert time.
fn default_of(def: &[String]) -> Option<ColumnDefault> {
    let at = def.iter().position(|t| t.eq_ignore_ascii_case("DEFAULT"))?;
    let v = def.get(at + 1)?;
    let upper = v.to_ascii_uppercase();
    if upper.starts_with("CURRENT_TIMESTAMP") || upper == "NOW()" {
        return Some(ColumnDefault::CurrentTimestamp);
    }
    if v.starts_with('\'') {
        let text = crate::source::mysql::ddl::string_literal(v)?;
        let portable = !text.starts_with("0000-00-00") && !text.contains('\0');
        return portable.then_some(ColumnDefault::Text(text));
    }
    ColumnDefault::number(v)
}

/// `db.t` → `t`, without quotes.
fn last_part(name: &str) -> String {
    unquote(name.rsplit('.').next().unwrap_or(name))
}

fn unquote(s: &str) -> String {
    s.trim_matches('`').replace("``", "`")
}

/// Identifiers (with their backquotes and dots), numbers, strings, and
/// single punctuation characters; parentheses kept as tokens, commas
/// inside them kept inside one type token (`decimal(10,2)`).
fn tokens(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '`' || c == '\'' || c == '"' {
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == c {
                    if chars.get(j + 1) == Some(&c) {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            let tok: String = chars[i..end].iter().collect();
            // `db`.`t` stays one name.
            match out.last_mut() {
                Some(last) if last.ends_with('.') => last.push_str(&tok),
                _ => out.push(tok),
            }
            i = end;
        } else if c == '(' {
            // A parenthesized list right after a word belongs to it.
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '(' {
                    depth += 1;
                } else if chars[j] == ')' {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            let tok: String = chars[i..end].iter().collect();
            match out.last_mut() {
                Some(last) => last.push_str(&tok),
                None => out.push(tok),
            }
            i = end;
        } else if c == ',' || c == ';' {
            out.push(c.to_string());
            i += 1;
        } else {
            let mut j = i;
            while j < chars.len()
                && !chars[j].is_whitespace()
                && !matches!(chars[j], ',' | '(' | ';' | '`' | '\'' | '"')
            {
                j += 1;
            }
            let tok: String = chars[i..j].iter().collect();
            match out.last_mut() {
                Some(last) if last.ends_with('.') || tok.starts_with('.') => last.push_str(&tok),
                _ => out.push(tok),
            }
            i = j.max(i + 1);
        }
    }
    out.retain(|t| t != ";");
    out
}

#[cfg(test)]
mod tests {
    use super::mysql_to_postgres as tr;

    #[test]
    fn column_clauses_carry_over() {
        assert_eq!(
            tr(
                "ALTER TABLE shop.t ADD COLUMN extra INT(11) UNSIGNED NOT NULL DEFAULT 0",
                "shop",
                "t"
            )
            .unwrap(),
            vec![r#"ALTER TABLE "shop"."t" ADD COLUMN IF NOT EXISTS "extra" bigint DEFAULT '0'"#]
        );
        assert_eq!(
            tr("ALTER TABLE t MODIFY k BIGINT UNSIGNED NOT NULL", "s", "t").unwrap(),
            vec![
                r#"ALTER TABLE "s"."t" ALTER COLUMN "k" TYPE numeric(20,0) USING "k"::text::numeric(20,0)"#
            ]
        );
        assert_eq!(
            tr("alter table `t` drop column `old`, drop gone", "s", "t").unwrap(),
            vec![
                r#"ALTER TABLE "s"."t" DROP COLUMN IF EXISTS "old""#,
                r#"ALTER TABLE "s"."t" DROP COLUMN IF EXISTS "gone""#
            ]
        );
        assert_eq!(
            tr("ALTER TABLE t RENAME COLUMN a TO b", "s", "t").unwrap(),
            vec![r#"ALTER TABLE "s"."t" RENAME COLUMN "a" TO "b""#]
        );
        assert_eq!(
            tr("ALTER TABLE t MODIFY v DECIMAL(12,3) NULL", "s", "t").unwrap(),
            vec![
                r#"ALTER TABLE "s"."t" ALTER COLUMN "v" TYPE numeric(12,3) USING "v"::text::numeric(12,3)"#
            ]
        );
        assert_eq!(
            tr(
                "ALTER TABLE t CHANGE COLUMN a b VARCHAR(60) NOT NULL",
                "s",
                "t"
            )
            .unwrap(),
            vec![
                r#"ALTER TABLE "s"."t" RENAME COLUMN "a" TO "b"; ALTER TABLE "s"."t" ALTER COLUMN "b" TYPE text USING "b"::text::text"#
            ]
        );
        assert_eq!(
            tr("RENAME TABLE shop.t TO shop.u", "shop", "t").unwrap(),
            vec![r#"ALTER TABLE "shop"."t" RENAME TO "u""#]
        );
    }

    #[test]
    fn other_clauses_are_refused_by_name() {
        let e = tr("ALTER TABLE t ADD INDEX i (a)", "s", "t").unwrap_err();
        assert!(e.contains("ADD INDEX"), "{e}");
        let e = tr("ALTER TABLE t ENGINE=InnoDB", "s", "t").unwrap_err();
        assert!(e.contains("not translated"), "{e}");
    }
}
