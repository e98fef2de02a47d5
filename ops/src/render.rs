//! How omsctl shows answers: tables, cells, YAML and the ids `-o ids` prints.

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde_json::Value;

use crate::Failure;

/// A JSON document as YAML.
pub fn yaml(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_norway::to_string(value).map_err(|e| Failure::from(anyhow::anyhow!("writing YAML: {e}")))
}

/// The fields that name a row, most specific first.
// `name` before `group`: a service's row (`stack services`) names it and its consumer group.
const ID_FIELDS: &[&str] = &["id", "orderId", "auditId", "name", "group", "at", "topic"];

/// Lists inside a document whose rows carry the ids (`plan` of a replay, `results`, ...).
const ID_LISTS: &[&str] = &["plan", "results", "items", "partitions", "members"];

/// The ids `-o ids` prints: a row's id field, each row's of a list, or the rows of the first
/// list a document holds. `None` when there are none to print.
pub fn ids_of(value: &Value) -> Option<Vec<String>> {
    fn id(row: &Value) -> Option<String> {
        ID_FIELDS.iter().find_map(|f| match row.get(f)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }
    match value {
        Value::Array(rows) => rows.iter().map(id).collect(),
        Value::Object(fields) => id(value).map(|i| vec![i]).or_else(|| {
            ID_LISTS
                .iter()
                .find_map(|l| fields.get(*l).filter(|v| v.is_array()))
                .and_then(ids_of)
        }),
        _ => None,
    }
}

/// A message's coordinates, one notation everywhere: `topic/partition@offset`.
pub fn coordinates(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}@{offset}")
}

/// A table with our look.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_string()));
    t
}

/// A JSON value as a table cell (`-` when absent).
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional value as a table cell (`-` when absent).
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Whether an error chain ends in a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_the_rows_id_fields_or_the_rows_of_a_documents_list() {
        assert_eq!(
            ids_of(&json!([{"orderId": "a"}, {"orderId": "b"}])),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            ids_of(&json!({"id": "x", "orderId": "y"})),
            Some(vec!["x".into()])
        );
        assert_eq!(
            ids_of(&json!({"dryRun": true, "plan": [{"id": "e1"}, {"id": "e2"}]})),
            Some(vec!["e1".into(), "e2".into()])
        );
        assert_eq!(
            ids_of(&json!([{"group": "g", "lag": 0}])),
            Some(vec!["g".into()])
        );
        // A service's row: its name, not its group.
        assert_eq!(
            ids_of(&json!([{"name": "order", "group": "oms-order"}])),
            Some(vec!["order".into()])
        );
        // A row without an id makes the whole list unprintable as ids, rather than a short list.
        assert_eq!(ids_of(&json!([{"orderId": "a"}, {"status": "x"}])), None);
        assert_eq!(ids_of(&json!({"ok": true})), None);
        assert_eq!(ids_of(&json!("text")), None);
        assert_eq!(ids_of(&json!([])), Some(Vec::new()));
    }

    #[test]
    fn yaml_is_the_json_document() {
        let doc = serde_json::json!({"orderId": "a", "items": [{"quantity": 2}]});
        let text = yaml(&doc).expect("yaml");
        let back: Value = serde_norway::from_str(&text).expect("parse");
        assert_eq!(back, doc);
    }
}
