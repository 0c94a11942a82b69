//! Row filters: CEL expressions (cel-rust) over one image of a row.
//!
//! The expression names the image under test `row` (or `after`, the same):
//! an insert's new row, a delete's old row, and for an update both in turn
//! (was the row in? is it in now?). Columns are read on access from the
//! event's values: nothing is copied into a map per row.
//!
//! An expression that is only comparisons of columns and literals joined
//! by `&&`, `||` and `!` (the common filter) is also kept as a [`Fast`]
//! tree, evaluated without the interpreter by the same value types'
//! `equals` and `compare`: the same answers, without the interpreter's
//! per-row allocations. A row any of whose comparisons fails (a NULL, a
//! type mismatch, a column the image lacks) goes to the interpreter, which
//! gives the error, or the answer CEL's `&&`/`||` make of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cel::common::ast::{Expr, LiteralValue, operators};
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
    /// The expression without the interpreter, when it is simple enough.
    fast: Option<Fast>,
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
        let fast = Fast::of(program.expression());
        Ok(Filter {
            env,
            program,
            fast,
            text: text.to_string(),
        })
    }

    /// Whether the expression runs without the interpreter (see [`Fast`]).
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Evaluates the filter on one image; `names` maps column names to
    /// slots of `values`.
    pub fn eval(&self, names: &[(String, Slot)], values: &[Value]) -> Result<bool, Unknown> {
        if let Some(Ok(b)) = self.fast.as_ref().map(|f| f.eval(names, values)) {
            return Ok(b);
        }
        self.interpret(names, values)
    }

    /// Evaluates the filter with cel's interpreter.
    fn interpret(&self, names: &[(String, Slot)], values: &[Value]) -> Result<bool, Unknown> {
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

/// A filter of comparisons joined by `&&`, `||` and `!`, evaluated without
/// the interpreter. `Err(())`: a comparison failed; the interpreter decides.
#[derive(Debug)]
enum Fast {
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Not(Box<Fast>),
    Cmp(Cmp, Operand, Operand),
    /// `<operand> in [<literal>, ...]`.
    In(Operand, Vec<LiteralValue>),
    /// A column or literal standing alone, which must be a boolean.
    Is(Operand),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
enum Operand {
    /// `row.<column>` / `after.<column>`.
    Column(String),
    Literal(LiteralValue),
}

impl Fast {
    /// The tree for `e`, or `None` when it holds anything else (a function,
    /// arithmetic, `in`, a macro): the interpreter alone runs it then.
    fn of(e: &cel::IdedExpr) -> Option<Fast> {
        let Expr::Call(call) = &e.expr else {
            return Operand::of(e).map(Fast::Is);
        };
        if call.target.is_some() {
            return None;
        }
        let arg = |i: usize| call.args.get(i).and_then(Fast::of).map(Box::new);
        let operand = |i: usize| call.args.get(i).and_then(Operand::of);
        let cmp = |op| Some(Fast::Cmp(op, operand(0)?, operand(1)?));
        match (call.func_name.as_str(), call.args.len()) {
            (operators::LOGICAL_AND, 2) => Some(Fast::And(arg(0)?, arg(1)?)),
            (operators::LOGICAL_OR, 2) => Some(Fast::Or(arg(0)?, arg(1)?)),
            (operators::LOGICAL_NOT, 1) => Some(Fast::Not(arg(0)?)),
            (operators::EQUALS, 2) => cmp(Cmp::Eq),
            (operators::NOT_EQUALS, 2) => cmp(Cmp::Ne),
            (operators::LESS, 2) => cmp(Cmp::Lt),
            (operators::LESS_EQUALS, 2) => cmp(Cmp::Le),
            (operators::GREATER, 2) => cmp(Cmp::Gt),
            (operators::GREATER_EQUALS, 2) => cmp(Cmp::Ge),
            (operators::IN, 2) => {
                let Expr::List(list) = &call.args.get(1)?.expr else {
                    return None;
                };
                if !list.optional_indices.is_empty() {
                    return None;
                }
                let items = list
                    .elements
                    .iter()
                    .map(|e| match &e.expr {
                        Expr::Literal(l) => Some(l.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(Fast::In(operand(0)?, items))
            }
            _ => None,
        }
    }

    /// The interpreter's answer where every comparison it reaches succeeds
    /// (`&&` and `||` short-circuit as it does).
    fn eval(&self, names: &[(String, Slot)], values: &[Value]) -> Result<bool, ()> {
        match self {
            Fast::And(a, b) => Ok(a.eval(names, values)? && b.eval(names, values)?),
            Fast::Or(a, b) => Ok(a.eval(names, values)? || b.eval(names, values)?),
            Fast::Not(a) => Ok(!a.eval(names, values)?),
            // As cel's list: an element equal to the value.
            Fast::In(o, items) => o.with(names, values, |v| {
                items.iter().any(|l| l.to_val().as_ref().equals(v))
            }),
            Fast::Is(o) => o.with(names, values, |v| {
                v.downcast_ref::<CelBool>().map(|b| *b.inner()).ok_or(())
            })?,
            Fast::Cmp(op, l, r) => l.with(names, values, |lv| {
                r.with(names, values, |rv| match op {
                    Cmp::Eq => Ok(lv.equals(rv)),
                    Cmp::Ne => Ok(!lv.equals(rv)),
                    _ => {
                        let o = lv.as_comparer().ok_or(())?.compare(rv).map_err(|_| ())?;
                        Ok(match op {
                            Cmp::Lt => o.is_lt(),
                            Cmp::Le => o.is_le(),
                            Cmp::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        })
                    }
                })?
            })?,
        }
    }
}

impl Operand {
    fn of(e: &cel::IdedExpr) -> Option<Operand> {
        match &e.expr {
            Expr::Literal(l) => Some(Operand::Literal(l.clone())),
            Expr::Select(s)
                if !s.test
                    && matches!(&s.operand.expr, Expr::Ident(n) if n == "row" || n == "after") =>
            {
                Some(Operand::Column(s.field.clone()))
            }
            _ => None,
        }
    }

    /// Calls `f` with the operand as a CEL value. `Err`: the image has no
    /// such column or lacks its value (the interpreter reports it).
    fn with<R>(
        &self,
        names: &[(String, Slot)],
        values: &[Value],
        f: impl FnOnce(&dyn Val) -> R,
    ) -> Result<R, ()> {
        match self {
            Operand::Literal(l) => Ok(f(l.to_val().as_ref())),
            Operand::Column(name) => {
                let (_, slot) = names.iter().find(|(n, _)| n == name).ok_or(())?;
                let v = match slot {
                    Slot::Column(i) => values.get(*i).unwrap_or(&Value::Null),
                    Slot::Fixed(v) => v,
                };
                if matches!(v, Value::Unchanged) {
                    return Err(());
                }
                Ok(f(Cel::of(v).val()))
            }
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

/// A column value as the interpreter holds it.
fn cel_value<'b, 'v>(v: &'b Value) -> CowVal<'b, 'v>
where
    'b: 'v,
{
    CowVal::Owned(Cel::of(v).boxed())
}

/// A column value as CEL sees it: numbers as numbers (decimals as
/// doubles), text as strings, bytes as bytes, dates and times as their
/// ISO text (which compares in time order). On the stack: the fast path
/// reads it without allocating.
enum Cel<'b> {
    Null(CelNull),
    Bool(CelBool),
    Int(CelInt),
    UInt(CelUInt),
    Double(CelDouble),
    Str(CelString<'b>),
    Bytes(CelBytes<'b>),
}

impl<'b> Cel<'b> {
    fn of(v: &'b Value) -> Cel<'b> {
        match v {
            Value::Null => Cel::Null(CelNull),
            Value::Bool(b) => Cel::Bool(CelBool::from(*b)),
            Value::Int(i) => Cel::Int(CelInt::from(*i)),
            Value::UInt(u) => Cel::UInt(CelUInt::from(*u)),
            Value::Year(y) => Cel::Int(CelInt::from(i64::from(*y))),
            Value::Float(x) => Cel::Double(CelDouble::from(f64::from(*x))),
            Value::Double(d) => Cel::Double(CelDouble::from(*d)),
            Value::Decimal(s) => Cel::Double(CelDouble::from(s.parse::<f64>().unwrap_or(f64::NAN))),
            Value::Text(s)
            | Value::Enum(s)
            | Value::Set(s)
            | Value::Json(s)
            | Value::Network(s)
            | Value::Composite(s)
            | Value::Other(s) => Cel::Str(CelString::from(s.as_str())),
            Value::Bytes(b) => Cel::Bytes(CelBytes::from(b.as_slice())),
            other => Cel::Str(CelString::from(super::values::text_form(other))),
        }
    }

    fn val(&self) -> &(dyn Val + 'b) {
        match self {
            Cel::Null(v) => v,
            Cel::Bool(v) => v,
            Cel::Int(v) => v,
            Cel::UInt(v) => v,
            Cel::Double(v) => v,
            Cel::Str(v) => v,
            Cel::Bytes(v) => v,
        }
    }

    fn boxed(self) -> Box<dyn Val + 'b> {
        match self {
            Cel::Null(v) => Box::new(v),
            Cel::Bool(v) => Box::new(v),
            Cel::Int(v) => Box::new(v),
            Cel::UInt(v) => Box::new(v),
            Cel::Double(v) => Box::new(v),
            Cel::Str(v) => Box::new(v),
            Cel::Bytes(v) => Box::new(v),
        }
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

    /// Every simple expression on every pair of values: where the fast path
    /// answers, the interpreter gives the same answer.
    #[test]
    fn the_fast_path_answers_as_the_interpreter_does() {
        let exprs = [
            "row.a == 1",
            "row.a != 1",
            "row.a < 2",
            "row.a <= 2.5",
            "row.a > 1u",
            "row.a >= -3",
            r#"row.a == "x""#,
            r#"row.a < "m""#,
            "row.a == null",
            "row.a != null",
            "row.a == true",
            "!(row.a > 1)",
            r#"row.a > 1 && row.b == "EU""#,
            r#"row.a > 1 || after.b == "EU""#,
            "row.b",
            "!row.b",
            "1 < row.a",
            "row.a == row.b",
            "row.a < row.b",
            "row.nope == 1",
            "row.a > 1 && row.nope == 1",
            "false && row.a > 1",
            "true || row.a > 1",
            "row.a == b'x'",
            r#"row.a in [1, 2.5, "x", null, true]"#,
            r#"row.b in ["EU", "UK"] && row.a >= 1"#,
            "!(row.a in [])",
        ];
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Int(1),
            Value::Int(2),
            Value::Int(-5),
            Value::UInt(1),
            Value::UInt(3),
            Value::Double(2.5),
            Value::Double(f64::NAN),
            Value::Float(1.0),
            Value::Decimal("1.0".into()),
            Value::Decimal("2.50".into()),
            Value::Text("EU".into()),
            Value::Text("m".into()),
            Value::Text("x".into()),
            Value::Bytes(b"x".to_vec()),
            Value::Year(2024),
            Value::Unchanged,
        ];
        let names = vec![
            ("a".to_string(), Slot::Column(0)),
            ("b".to_string(), Slot::Column(1)),
        ];
        let (mut fast_answers, mut all) = (0, 0);
        for e in exprs {
            let f = Filter::compile(e).unwrap();
            let fast = f.fast.as_ref().unwrap_or_else(|| panic!("{e} is simple"));
            for a in &values {
                for b in &values {
                    let row = [a.clone(), b.clone()];
                    all += 1;
                    let slow = f.interpret(&names, &row);
                    if let Ok(x) = fast.eval(&names, &row) {
                        fast_answers += 1;
                        assert!(
                            matches!(slow, Ok(y) if y == x),
                            "{e} on {row:?}: fast {x}, interpreter {slow:?}"
                        );
                    }
                    // The filter as a whole answers as the interpreter.
                    let whole = f.eval(&names, &row);
                    assert_eq!(format!("{whole:?}"), format!("{slow:?}"), "{e} on {row:?}");
                }
            }
        }
        assert!(fast_answers * 2 > all, "{fast_answers} of {all}");
        for e in [
            r#"row.b.startsWith("E")"#,
            "row.a + 1 > 2",
            "row.a in [1, row.b]",
            "row['a'] == 1",
        ] {
            assert!(!Filter::compile(e).unwrap().is_fast(), "{e}");
        }
    }

    #[test]
    fn bad_expressions_are_refused_at_compile_time() {
        let e = Filter::compile("row.region == ").unwrap_err();
        assert!(e.contains("not a CEL expression"), "{e}");
        let e = Filter::compile("region == \"EU\"").unwrap_err();
        assert!(e.contains("row.<column>"), "{e}");
    }
}
