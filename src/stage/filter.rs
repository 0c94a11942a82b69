//! Row filters: CEL expressions (cel-rust) over one image of a row.
//!
//! The expression names the image under test `row` (or `after`, the same):
//! an insert's new row, a delete's old row, and for an update both in turn
//! (was the row in? is it in now?). Columns are read on access from the
//! event's values: nothing is copied into a map per row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cel::common::traits::Indexer;
use cel::common::types::{CelBool, CelBytes, CelDouble, CelInt, CelNull, CelString, CelUInt, Type};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, ExecutionError, Program};

use crate::event::Value;

/// A compiled filter expression.
pub struct Filter {
    env: Arc<Env>,
    program: Program,
    pub text: String,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("text", &self.text).finish()
    }
}

/// Where a filter column's value comes from.
#[derive(Debug, Clone)]
pub enum Slot {
    /// The image's value at this index.
    Column(usize),
    /// A value the rules add (a constant, the source table's name).
    Fixed(Value),
}

/// Why a row's filter gave no answer.
#[derive(Debug)]
pub enum Unknown {
    /// The image lacks a column the expression read (a before image the
    /// source sent only the key of, an unchanged TOAST value).
    Missing,
    /// The expression failed (a type mismatch, a NULL compared with a
    /// number): the message names no value.
    Error(String),
}

impl Filter {
    /// Compiles `text`; the error says what is wrong with it.
    pub fn compile(text: &str) -> Result<Filter, String> {
        let env = Arc::new(Env::stdlib());
        let program = env.compile(text).map_err(|e| {
            format!(
                "{:?} is not a CEL expression: {}",
                text,
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        let refs = program.references();
        let mut vars = refs.variables();
        vars.sort_unstable();
        if let Some(v) = vars.iter().find(|v| !matches!(**v, "row" | "after")) {
            return Err(format!(
                "{text:?} reads {v:?}: a filter reads the row's columns as row.<column> (or after.<column>), e.g. row.region == \"EU\" && row.amount > 100"
            ));
        }
        Ok(Filter {
            env,
            program,
            text: text.to_string(),
        })
    }

    /// Evaluates the filter on one image; `names` maps column names to
    /// slots of `values`.
    pub fn eval(&self, names: &[(String, Slot)], values: &[Value]) -> Result<bool, Unknown> {
        let row = RowView {
            names,
            values,
            missing: AtomicBool::new(false),
        };
        let vars = Vars { row: &row };
        let mut ctx = Context::with_env(self.env.clone());
        ctx.set_variable_resolver(&vars);
        // The value as the interpreter holds it: no conversion per row.
        let r = cel::Value::resolve_val(self.program.expression(), &ctx);
        if row.missing.load(Ordering::Relaxed) {
            return Err(Unknown::Missing);
        }
        match r {
            Ok(v) => match v.downcast_ref::<CelBool>() {
                Some(b) => Ok(*b.inner()),
                None => Err(Unknown::Error(format!(
                    "the filter gave a {}, not a boolean",
                    v.get_type().name()
                ))),
            },
            Err(e) => Err(Unknown::Error(describe(&e))),
        }
    }
}

/// An execution error without the values it may quote.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("the row has no column {k}"),
        ExecutionError::NoSuchOverload(o) => format!(
            "no operator or function `{}` for ({}): a column of another type, or NULL, where the expression expects a value",
            o.function(),
            o.argument_types().join(", ")
        ),
        ExecutionError::UndeclaredReference(r) => format!("unknown name {r}"),
        ExecutionError::FunctionError { function, .. } => {
            format!("function {function} failed on the row's value")
        }
        other => {
            // Variants that quote values are summarized by their kind.
            let text = format!("{other:?}");
            text.split(['(', '{', ' '])
                .next()
                .unwrap_or("evaluation error")
                .to_string()
        }
    }
}

struct Vars<'a> {
    row: &'a RowView<'a>,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "row" | "after" => Some(CowVal::Borrowed(self.row)),
            // The interpreter asks for `row.amount` whole first: answered
            // here, the column is read without going through the map.
            v => {
                let column = v
                    .strip_prefix("row.")
                    .or_else(|| v.strip_prefix("after."))?;
                self.row.column(column)
            }
        }
    }
}

/// One image as a CEL map: `row.region` reads the column on access.
#[derive(Debug)]
struct RowView<'a> {
    names: &'a [(String, Slot)],
    values: &'a [Value],
    /// Set when the expression read a column the image doesn't hold.
    missing: AtomicBool,
}

impl Clone for RowView<'_> {
    fn clone(&self) -> Self {
        RowView {
            names: self.names,
            values: self.values,
            missing: AtomicBool::new(self.missing.load(Ordering::Relaxed)),
        }
    }
}

impl<'a> RowView<'a> {
    /// A column's value, or `None` when the row has no such column (the
    /// interpreter then reports it by name).
    fn column<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>>
    where
        'a: 'b,
    {
        let (_, slot) = self.names.iter().find(|(n, _)| n == name)?;
        let v = match slot {
            Slot::Column(i) => self.values.get(*i).unwrap_or(&Value::Null),
            Slot::Fixed(v) => v,
        };
        if matches!(v, Value::Unchanged) {
            self.missing.store(true, Ordering::Relaxed);
            return Some(CowVal::owned(CelNull));
        }
        Some(cel_value(v))
    }
}

impl Val for RowView<'_> {
    fn get_type(&self) -> &Type {
        &cel::common::types::MAP_TYPE
    }

    fn cel_type() -> &'static Type
    where
        Self: Sized,
    {
        &cel::common::types::MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }
}

impl Indexer for RowView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let Ok(name) = <&str>::try_from(idx) else {
            return Err(ExecutionError::UnexpectedType {
                got: idx.get_type().name().to_owned(),
                want: "column name".to_owned(),
            });
        };
        let Some((_, slot)) = self.names.iter().find(|(n, _)| n == name) else {
            return Err(ExecutionError::no_such_key(name));
        };
        let v = match slot {
            Slot::Column(i) => self.values.get(*i).unwrap_or(&Value::Null),
            Slot::Fixed(v) => v,
        };
        if matches!(v, Value::Unchanged) {
            self.missing.store(true, Ordering::Relaxed);
            return Ok(CowVal::owned(CelNull));
        }
        Ok(cel_value(v))
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// A column value as CEL sees it: numbers as numbers (decimals as
/// doubles), text as strings, bytes as bytes, dates and times as their
/// ISO text (which compares in time order).
fn cel_value<'b, 'v>(v: &'b Value) -> CowVal<'b, 'v>
where
    'b: 'v,
{
    match v {
        Value::Null => CowVal::owned(CelNull),
        Value::Bool(b) => CowVal::owned(CelBool::from(*b)),
        Value::Int(i) => CowVal::owned(CelInt::from(*i)),
        Value::UInt(u) => CowVal::owned(CelUInt::from(*u)),
        Value::Year(y) => CowVal::owned(CelInt::from(i64::from(*y))),
        Value::Float(f) => CowVal::owned(CelDouble::from(f64::from(*f))),
        Value::Double(d) => CowVal::owned(CelDouble::from(*d)),
        Value::Decimal(s) => CowVal::owned(CelDouble::from(s.parse::<f64>().unwrap_or(f64::NAN))),
        Value::Text(s)
        | Value::Enum(s)
        | Value::Set(s)
        | Value::Json(s)
        | Value::Network(s)
        | Value::Composite(s)
        | Value::Other(s) => CowVal::owned(CelString::from(s.as_str())),
        Value::Bytes(b) => CowVal::owned(CelBytes::from(b.as_slice())),
        other => CowVal::owned(CelString::from(super::values::text_form(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<(String, Slot)> {
        vec![
            ("region".into(), Slot::Column(0)),
            ("amount".into(), Slot::Column(1)),
            ("shard".into(), Slot::Fixed(Value::Text("s1.orders".into()))),
        ]
    }

    #[test]
    fn filters_read_columns_by_name() {
        let f = Filter::compile(r#"row.region == "EU" && row.amount > 100"#).unwrap();
        let n = names();
        let eu = [Value::Text("EU".into()), Value::Decimal("150.00".into())];
        let us = [Value::Text("US".into()), Value::Decimal("150.00".into())];
        let small = [Value::Text("EU".into()), Value::Decimal("99.99".into())];
        assert!(f.eval(&n, &eu).unwrap());
        assert!(!f.eval(&n, &us).unwrap());
        assert!(!f.eval(&n, &small).unwrap());
        let f = Filter::compile(r#"after.shard.startsWith("s1.") && after.amount >= 1"#).unwrap();
        assert!(f.eval(&n, &eu).unwrap());
    }

    #[test]
    fn errors_and_missing_columns_are_told_apart() {
        let n = names();
        let f = Filter::compile("row.amount > 100").unwrap();
        let null = [Value::Text("EU".into()), Value::Null];
        match f.eval(&n, &null) {
            Err(Unknown::Error(m)) => assert!(m.contains("no operator"), "{m}"),
            other => panic!("{other:?}"),
        }
        let unchanged = [Value::Text("EU".into()), Value::Unchanged];
        assert!(matches!(f.eval(&n, &unchanged), Err(Unknown::Missing)));
        let f = Filter::compile("row.nope == 1").unwrap();
        match f.eval(&n, &null) {
            Err(Unknown::Error(m)) => assert!(m.contains("nope"), "{m}"),
            other => panic!("{other:?}"),
        }
        let f = Filter::compile("row.region").unwrap();
        assert!(matches!(f.eval(&n, &null), Err(Unknown::Error(_))));
    }

    #[test]
    fn bad_expressions_are_refused_at_compile_time() {
        let e = Filter::compile("row.region == ").unwrap_err();
        assert!(e.contains("not a CEL expression"), "{e}");
        let e = Filter::compile("region == \"EU\"").unwrap_err();
        assert!(e.contains("row.<column>"), "{e}");
    }
}
