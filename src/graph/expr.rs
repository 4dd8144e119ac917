//! Resource inputs: literal JSON values, or references to another resource's outputs that are
//! known only after that resource is applied.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `address.output`, e.g. the `id` of `aws_vpc.main`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutputRef {
    pub address: String,
    pub output: String,
}

impl fmt::Display for OutputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.address, self.output)
    }
}

/// An input expression. `List` and `Map` exist only to hold references inside collections;
/// a collection without references is a plain `Value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Value(Value),
    Ref(OutputRef),
    List(Vec<Expr>),
    Map(BTreeMap<String, Expr>),
}

impl Expr {
    pub fn output(address: &str, output: &str) -> Expr {
        Expr::Ref(OutputRef {
            address: address.to_string(),
            output: output.to_string(),
        })
    }

    /// Every reference inside this expression.
    pub fn references(&self) -> Vec<&OutputRef> {
        let mut found = Vec::new();
        let mut pending = vec![self];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::Value(_) => {}
                Expr::Ref(reference) => found.push(reference),
                Expr::List(items) => pending.extend(items),
                Expr::Map(entries) => pending.extend(entries.values()),
            }
        }
        found
    }

    /// The value, if every reference in it can be looked up now; `None` means
    /// "known after apply".
    pub fn resolve(&self, lookup: &mut impl FnMut(&OutputRef) -> Option<Value>) -> Option<Value> {
        match self {
            Expr::Value(value) => Some(value.clone()),
            Expr::Ref(reference) => lookup(reference),
            Expr::List(items) => items
                .iter()
                .map(|item| item.resolve(lookup))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            Expr::Map(entries) => entries
                .iter()
                .map(|(key, value)| value.resolve(lookup).map(|value| (key.clone(), value)))
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(Value::Object),
        }
    }
}

impl Expr {
    /// This expression with every reference that can be looked up now replaced by its value;
    /// the rest stay references ("known after apply").
    pub fn partially_resolve(&self, lookup: &mut impl FnMut(&OutputRef) -> Option<Value>) -> Expr {
        if let Some(value) = self.resolve(lookup) {
            return Expr::Value(value);
        }
        match self {
            Expr::Value(_) | Expr::Ref(_) => self.clone(),
            Expr::List(items) => Expr::List(
                items
                    .iter()
                    .map(|item| item.partially_resolve(lookup))
                    .collect(),
            ),
            Expr::Map(entries) => Expr::Map(
                entries
                    .iter()
                    .map(|(key, value)| (key.clone(), value.partially_resolve(lookup)))
                    .collect(),
            ),
        }
    }
}

impl From<Value> for Expr {
    fn from(value: Value) -> Self {
        Expr::Value(value)
    }
}

impl From<&str> for Expr {
    fn from(value: &str) -> Self {
        Expr::Value(Value::String(value.to_string()))
    }
}

impl From<String> for Expr {
    fn from(value: String) -> Self {
        Expr::Value(Value::String(value))
    }
}

impl From<bool> for Expr {
    fn from(value: bool) -> Self {
        Expr::Value(Value::Bool(value))
    }
}

impl From<u32> for Expr {
    fn from(value: u32) -> Self {
        Expr::Value(Value::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_when_every_reference_is_known() {
        let expr = Expr::List(vec![Expr::output("aws_subnet.a", "id"), "literal".into()]);
        let known = expr.resolve(&mut |reference| Some(json!(format!("{reference}-value"))));
        assert_eq!(known, Some(json!(["aws_subnet.a.id-value", "literal"])));
        let unknown = expr.resolve(&mut |_| None);
        assert_eq!(unknown, None);
        assert_eq!(expr.references().len(), 1);
    }
}
