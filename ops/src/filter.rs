//! `--where FIELD OP VALUE`: the one filter language of omsctl.
//!
//! A condition reads a message as one JSON document: the fields of its decoded envelope
//! (`type`, `source`, `payload.reason`, `payload.amount.amountMinor`,
//! `payload.items.0.productId`, ...) and the record's own ([`RECORD_FIELDS`]: `key`, `topic`,
//! `partition`, `offset`, `timestamp`, `headers.NAME`, and `text`, the key, value and headers as
//! one text); a dead letter adds `dlq.class`, `dlq.origin`, `dlq.service` and `dlq.error`. FIELD
//! is a dotted path into it; OP is `=`, `!=`, `>`, `>=`, `<`, `<=` or `~` (contains). Both sides
//! numbers: compared as numbers; otherwise as text (a JSON string without its quotes). A
//! message that lacks the field does not match (`!=` included: nothing is known about it).
//!
//! The other filter flags are shorthands for conditions ([`shorthand`]): `--key K` is
//! `key=K`, `--type T` is `type=T`, `--header N=V` is `headers.N=V`, `--grep TEXT` is
//! `text~TEXT`, and `dlq replay --filter class=C` is `dlq.class=C`.

use serde_json::Value;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `~`: the text contains the value.
    Contains,
}

/// One `--where` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Where {
    /// The path into the envelope.
    pub path: Vec<String>,
    /// How to compare.
    pub op: Op,
    /// What to compare with.
    pub value: String,
}

/// Parses `payload.reason=OUT_OF_STOCK`, `payload.amount.amountMinor>=10000`, ...
pub fn parse(s: &str) -> Result<Where, String> {
    // Longest operators first, so `>=` is not read as `>` then `=...`.
    const OPS: [(&str, Op); 7] = [
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Contains),
    ];
    let bad = |why: &str| {
        format!("invalid --where {s:?}: {why} (expected FIELD OP VALUE, e.g. payload.reason=OUT_OF_STOCK or payload.amount.amountMinor>=10000; OP one of = != > >= < <= ~)")
    };
    let (at, token, op) = OPS
        .iter()
        .filter_map(|(t, op)| s.find(t).map(|i| (i, *t, *op)))
        .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
        .ok_or_else(|| bad("no operator"))?;
    let field = s[..at].trim();
    let value = s[at + token.len()..].trim();
    if field.is_empty() {
        return Err(bad("no field"));
    }
    let path: Vec<String> = field.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("an empty step in the field's path"));
    }
    if matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le) && value.parse::<f64>().is_err() {
        return Err(bad("a comparison needs a number"));
    }
    Ok(Where {
        path,
        op,
        value: value.to_owned(),
    })
}

impl Where {
    /// Whether the envelope `doc` (the message's value as JSON) matches.
    pub fn matches(&self, doc: &Value) -> bool {
        let mut at = doc;
        for step in &self.path {
            let next = match at {
                Value::Object(fields) => fields.get(step),
                Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(v) => at = v,
                None => return false,
            }
        }
        let text = match at {
            Value::String(s) => s.clone(),
            Value::Null => "null".to_owned(),
            other => other.to_string(),
        };
        let numbers = match at {
            Value::Number(n) => n.as_f64().zip(self.value.parse::<f64>().ok()),
            _ => None,
        };
        match (self.op, numbers) {
            (Op::Contains, _) => text.contains(&self.value),
            (Op::Eq, Some((a, b))) => a == b,
            (Op::Ne, Some((a, b))) => a != b,
            (Op::Eq, None) => text == self.value,
            (Op::Ne, None) => text != self.value,
            (Op::Gt, Some((a, b))) => a > b,
            (Op::Ge, Some((a, b))) => a >= b,
            (Op::Lt, Some((a, b))) => a < b,
            (Op::Le, Some((a, b))) => a <= b,
            // A comparison with a field that is not a number.
            (Op::Gt | Op::Ge | Op::Lt | Op::Le, None) => false,
        }
    }
}

/// The record fields a condition may name beside the envelope's.
pub const RECORD_FIELDS: &[&str] = &[
    "key",
    "topic",
    "partition",
    "offset",
    "timestamp",
    "headers",
    "text",
];

/// The condition a shorthand flag stands for: `key`, `type`, `header` (`NAME=VALUE`), `grep`,
/// and the dead-letter fields of `dlq replay --filter` (`class`, `origin`, `service`).
pub fn shorthand(flag: &str, value: &str) -> Result<Where, String> {
    let field = |steps: &[&str]| steps.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let (path, op, value) = match flag {
        "key" | "type" => (field(&[flag]), Op::Eq, value),
        "grep" => (field(&["text"]), Op::Contains, value),
        "header" => {
            let (name, v) = value
                .split_once('=')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| format!("invalid --header {value:?}: expected NAME=VALUE"))?;
            // A header's name may hold dots: it is one step.
            (field(&["headers", name]), Op::Eq, v)
        }
        "class" | "origin" | "service" => (field(&["dlq", flag]), Op::Eq, value),
        other => return Err(format!("{other:?} is not a filter shorthand")),
    };
    Ok(Where {
        path,
        op,
        value: value.to_owned(),
    })
}

/// Whether the document (see the module's doc) matches every condition.
pub fn all_match(conditions: &[Where], doc: &Value) -> bool {
    conditions.iter().all(|w| w.matches(doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"type": "order.cancelled", "source": "saga", "payload": {
            "reason": "OUT_OF_STOCK", "amount": {"amountMinor": 12500, "currency": "EUR"},
            "items": [{"productId": "mouse-01", "quantity": 2}], "detail": null}})
    }

    fn holds(s: &str) -> bool {
        parse(s).expect(s).matches(&doc())
    }

    #[test]
    fn fields_compare_as_text_or_as_numbers() {
        assert!(holds("payload.reason=OUT_OF_STOCK"));
        assert!(!holds("payload.reason=TIMEOUT"));
        assert!(holds("payload.reason!=TIMEOUT"));
        assert!(holds("type = order.cancelled"));
        assert!(holds("payload.amount.amountMinor>=12500"));
        assert!(holds("payload.amount.amountMinor>10000"));
        assert!(!holds("payload.amount.amountMinor<12500"));
        assert!(holds("payload.amount.amountMinor<=12500"));
        assert!(holds("payload.amount.amountMinor=12500.0"));
        assert!(holds("payload.items.0.productId=mouse-01"));
        assert!(holds("payload.items.0.quantity>1"));
        assert!(holds("payload.reason~STOCK"));
        assert!(holds("payload.detail=null"));
        // Missing fields and text compared with numbers match nothing.
        assert!(!holds("payload.nope=x"));
        assert!(!holds("payload.nope!=x"));
        assert!(!holds("payload.items.5.quantity>1"));
        assert!(!holds("payload.reason>1"));
    }

    #[test]
    fn bad_conditions_say_what_is_wrong() {
        for (s, says) in [
            ("payload.reason", "no operator"),
            ("=x", "no field"),
            ("payload..reason=x", "empty step"),
            ("payload.amount>lots", "needs a number"),
        ] {
            let e = parse(s).expect_err(s);
            assert!(e.contains(says) && e.contains("--where"), "{s}: {e}");
        }
        assert_eq!(parse("a>=1").map(|w| w.op), Ok(Op::Ge));
        assert_eq!(parse("a!=1").map(|w| w.op), Ok(Op::Ne));
        assert_eq!(
            parse("a=b>c").map(|w| (w.op, w.value)),
            Ok((Op::Eq, "b>c".into()))
        );
    }

    #[test]
    fn shorthands_are_conditions_of_the_same_language() {
        let doc = json!({"key": "o-1", "type": "payment.declined", "text": "o-1 {\"a\":1} trace",
            "headers": {"oms.type": "payment.declined"}, "dlq": {"class": "poison"}});
        for (flag, value) in [
            ("key", "o-1"),
            ("type", "payment.declined"),
            ("grep", "trace"),
            ("header", "oms.type=payment.declined"),
            ("class", "poison"),
        ] {
            let w = shorthand(flag, value).expect(flag);
            assert!(w.matches(&doc), "{flag}={value}: {w:?}");
            let other = shorthand(flag, &format!("{value}-x")).expect(flag);
            assert!(!other.matches(&doc), "{flag}: {other:?} matched");
        }
        assert_eq!(
            shorthand("header", "oms.type=x").map(|w| w.path),
            Ok(vec!["headers".to_owned(), "oms.type".to_owned()])
        );
        assert_eq!(shorthand("grep", "x").map(|w| w.op), Ok(Op::Contains));
        assert!(shorthand("header", "=x").is_err());
        assert!(shorthand("colour", "red").is_err());
        assert!(all_match(&[], &doc));
        assert!(!all_match(
            &[
                parse("key=o-1").expect("parse"),
                parse("type=x").expect("parse")
            ],
            &doc
        ));
    }
}
