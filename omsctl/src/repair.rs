//! The pure parts of repairing dead letters before replay: JSON Merge Patch (RFC 7396), the
//! changes an edit made (for the audit), and reading the replay audit back (how often each entry
//! was sent, which replays were cut short).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// Applies a JSON Merge Patch (RFC 7396): objects merge key by key, `null` removes a key,
/// anything else replaces what was there.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(into) = target {
        for (k, v) in fields {
            if v.is_null() {
                into.remove(k);
            } else {
                merge_patch(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Escapes one JSON Pointer token (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What changed from `before` to `after`, leaf by leaf: `[{path, from, to}]` with JSON Pointer
/// paths; a key only on one side has `null` on the other (and `added`/`removed` says which).
pub fn changes(before: &Value, after: &Value) -> Vec<Value> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Value>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    walk(&format!("{path}/{}", token(k)), x.get(k), y.get(k), out);
                }
            }
            (x, y) if x == y => {}
            (None, Some(y)) => out.push(json!({"path": path, "added": y})),
            (Some(x), None) => out.push(json!({"path": path, "removed": x})),
            (x, y) => out.push(json!({"path": path, "from": x, "to": y})),
        }
    }
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out
}

/// One replay as its audit records tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// Its id.
    pub audit_id: String,
    /// Who ran it.
    pub who: String,
    /// When it started.
    pub started_at: String,
    /// When it finished (none: cut short, or still running).
    pub finished_at: Option<String>,
    /// The entries it set out to replay, in order.
    pub planned: Vec<String>,
    /// The entries it sent, with where they went (`topic/partition@offset`).
    pub sent: Vec<(String, String)>,
    /// Its finished record's per-entry results, if it finished.
    pub results: Vec<Value>,
    /// Edits made before sending, per entry.
    pub edits: BTreeMap<String, Value>,
    /// Where each entry was to go (topic as deployed), per entry.
    pub targets: BTreeMap<String, String>,
    /// Resumed by these later runs.
    pub resumed_by: Vec<String>,
}

impl Replay {
    /// `finished`, or `partial` when it was cut short.
    pub fn state(&self) -> &'static str {
        if self.finished_at.is_some() {
            "finished"
        } else {
            "partial"
        }
    }

    /// Planned entries never sent.
    pub fn unsent(&self) -> Vec<String> {
        self.planned
            .iter()
            .filter(|e| !self.sent.iter().any(|(s, _)| s == *e))
            .cloned()
            .collect()
    }

    /// The JSON form of `dlq audit`.
    pub fn to_json(&self) -> Value {
        json!({
            "auditId": self.audit_id,
            "who": self.who,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "state": self.state(),
            "entries": self.planned,
            "sent": self.sent.iter().map(|(e, at)| json!({"id": e, "at": at})).collect::<Vec<_>>(),
            "results": self.results,
            "edits": self.edits,
            "resumedBy": self.resumed_by,
        })
    }
}

/// Folds audit records (oldest first) into replays, oldest first. `normalize` turns an entry id
/// into today's notation. A record of a resumed run (`resumes`) adds its sends to the replay it
/// resumes; its own finished record finishes both.
pub fn replays(records: &[Value], normalize: impl Fn(&str) -> String) -> Vec<Replay> {
    let mut out: Vec<Replay> = Vec::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(&normalize)
            .collect()
    };
    for r in records {
        // A resumed run writes under the audit id it resumes.
        let id = text(&r["auditId"]);
        let index = match out.iter().position(|a| a.audit_id == id) {
            Some(i) => i,
            None => {
                out.push(Replay {
                    audit_id: id.clone(),
                    who: text(&r["who"]),
                    started_at: text(&r["at"]),
                    finished_at: None,
                    planned: Vec::new(),
                    sent: Vec::new(),
                    results: Vec::new(),
                    edits: BTreeMap::new(),
                    targets: BTreeMap::new(),
                    resumed_by: Vec::new(),
                });
                out.len() - 1
            }
        };
        let a = &mut out[index];
        match r["phase"].as_str() {
            Some("started") => {
                if a.planned.is_empty() {
                    a.planned = ids(&r["entries"]);
                }
                if let Some(targets) = r["targets"].as_object() {
                    for (k, v) in targets {
                        a.targets.insert(normalize(k), text(v));
                    }
                }
                if let Some(edits) = r["edits"].as_object() {
                    for (k, v) in edits {
                        a.edits.insert(normalize(k), v.clone());
                    }
                }
            }
            Some("resumed") => a.resumed_by.push(text(&r["who"])),
            Some("sent") => {
                let entry = normalize(r["entry"].as_str().unwrap_or_default());
                a.sent.push((entry, text(&r["to"])));
            }
            Some("finished") => {
                a.finished_at = Some(text(&r["at"]));
                let results: Vec<Value> = r["results"].as_array().cloned().unwrap_or_default();
                // Audits written before per-entry records: the results say what was sent.
                for res in &results {
                    let entry = normalize(res["id"].as_str().unwrap_or_default());
                    if res["ok"] == true && !a.sent.iter().any(|(e, _)| *e == entry) {
                        let at = format!(
                            "{}/{}@{}",
                            text(&res["topic"]),
                            res["partition"],
                            res["offset"]
                        );
                        a.sent.push((entry, at));
                    }
                }
                a.results.extend(results);
                if a.planned.is_empty() {
                    a.planned = ids(&r["entries"]);
                }
            }
            _ => {}
        }
    }
    out
}

/// How many times each entry was sent, over every replay.
pub fn sent_counts(replays: &[Replay]) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for r in replays {
        for (e, _) in &r.sent {
            *counts.entry(e.clone()).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_follow_rfc_7396() {
        // The examples of RFC 7396, section 3.
        let mut doc = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"], "content": "This will be unchanged"});
        merge_patch(
            &mut doc,
            &json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": null}, "tags": ["example"]}),
        );
        assert_eq!(
            doc,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"], "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
        for (target, patch, result) in [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
        ] {
            let mut t = target.clone();
            merge_patch(&mut t, &patch);
            assert_eq!(t, result, "{target} + {patch}");
        }
    }

    #[test]
    fn changes_name_every_changed_leaf_by_its_pointer() {
        let before = json!({"payload": {"paymentToken": "tok_visa", "amount": {"units": 5}}, "a/b": 1, "gone": true});
        let after = json!({"payload": {"paymentToken": "tok_mastercard", "amount": {"units": 5}}, "a/b": 2, "new": [1]});
        assert_eq!(
            changes(&before, &after),
            vec![
                json!({"path": "/a~1b", "from": 1, "to": 2}),
                json!({"path": "/gone", "removed": true}),
                json!({"path": "/new", "added": [1]}),
                json!({"path": "/payload/paymentToken", "from": "tok_visa", "to": "tok_mastercard"}),
            ]
        );
        assert_eq!(changes(&before, &before), Vec::<Value>::new());
        assert_eq!(
            changes(&json!("x"), &json!({"a": 1})),
            vec![json!({"path": "", "from": "x", "to": {"a": 1}})]
        );
    }

    fn same(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn the_audit_tells_finished_partial_and_resumed_replays_apart() {
        let records = [
            json!({"auditId": "a1", "phase": "started", "who": "op", "at": "t0", "entries": ["e1", "e2", "e3"], "edits": {"e2": {"changes": []}}}),
            json!({"auditId": "a1", "phase": "sent", "entry": "e1", "to": "t/0@4", "at": "t1"}),
            // Cut short here; a later run resumes it.
            json!({"auditId": "a1", "phase": "resumed", "who": "op2", "at": "t5"}),
            json!({"auditId": "a1", "phase": "sent", "entry": "e2", "to": "t/1@9", "at": "t6"}),
            json!({"auditId": "b1", "phase": "started", "who": "op", "at": "t7", "entries": ["e4"]}),
        ];
        let r = replays(&records, same);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].state(), "partial");
        assert_eq!(r[0].unsent(), vec!["e3".to_owned()]);
        assert_eq!(r[0].resumed_by, vec!["op2".to_owned()]);
        assert!(r[0].edits.contains_key("e2"));
        // Started but never sent is not replayed.
        assert_eq!(r[1].unsent(), vec!["e4".to_owned()]);
        let counts = sent_counts(&r);
        assert_eq!(counts.get("e1"), Some(&1));
        assert_eq!(counts.get("e4"), None);

        let mut done = records.to_vec();
        done.push(json!({"auditId": "a1", "phase": "finished", "at": "t8", "results": [{"id": "e3", "ok": true, "topic": "t", "partition": 2, "offset": 1}]}));
        let r = replays(&done, same);
        assert_eq!(r[0].state(), "finished");
        assert_eq!(r[0].finished_at.as_deref(), Some("t8"));
        assert!(r[0].unsent().is_empty());
        assert_eq!(
            r[0].sent.last(),
            Some(&("e3".to_owned(), "t/2@1".to_owned()))
        );
    }

    #[test]
    fn audits_from_before_per_entry_records_count_their_ok_results() {
        let records = [
            json!({"auditId": "old", "phase": "started", "who": "op", "at": "t0", "entries": ["x:0:1", "x:0:2"]}),
            json!({"auditId": "old", "phase": "finished", "at": "t1", "entries": ["x:0:1", "x:0:2"], "results": [{"id": "x:0:1", "ok": true, "topic": "t", "partition": 0, "offset": 3}, {"id": "x:0:2", "ok": false, "error": "boom"}]}),
        ];
        let r = replays(&records, |s| s.replace(":0:", "/0@"));
        assert_eq!(r[0].state(), "finished");
        assert_eq!(sent_counts(&r), BTreeMap::from([("x/0@1".to_owned(), 1)]));
        assert_eq!(r[0].unsent(), vec!["x/0@2".to_owned()]);
    }
}
