//! Repairing a dead letter before it is replayed: a JSON merge patch (RFC 7396, applied by the
//! `json-patch` crate) or an edit in `$EDITOR`, checked against the contracts, and the changes
//! it made, leaf by leaf, for the audit.

use std::path::Path;

use anyhow::Context;
use oms_contracts::Envelope;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entry::Entry;
use crate::ctx::Ctx;
use crate::Failure;

/// An edit made to an entry before it was sent: what it changed, and the value sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// Every changed leaf.
    pub changes: Vec<Change>,
    /// The value sent (the edited envelope, compact JSON).
    #[serde(default)]
    pub value: String,
}

/// One changed leaf of a JSON document, named by its JSON Pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Change {
    /// A value replaced.
    Changed {
        /// Where.
        path: String,
        /// Before.
        from: Value,
        /// After.
        to: Value,
    },
    /// A key that was not there.
    Added {
        /// Where.
        path: String,
        /// Its value.
        added: Value,
    },
    /// A key taken out.
    Removed {
        /// Where.
        path: String,
        /// Its value before.
        removed: Value,
    },
}

impl Change {
    /// The change as one line for a terminal.
    pub fn line(&self) -> String {
        match self {
            Change::Changed { path, from, to } => format!("{path}: {from} -> {to}"),
            Change::Added { path, added } => format!("{path}: added {added}"),
            Change::Removed { path, removed } => format!("{path}: removed (was {removed})"),
        }
    }
}

/// Applies a JSON Merge Patch (RFC 7396): objects merge key by key, `null` removes a key,
/// anything else replaces what was there.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Escapes one JSON Pointer token (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What changed from `before` to `after`, leaf by leaf, in path order.
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Change>) {
        let path_ = || path.to_owned();
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
            (None, Some(y)) => out.push(Change::Added {
                path: path_(),
                added: y.clone(),
            }),
            (Some(x), None) => out.push(Change::Removed {
                path: path_(),
                removed: x.clone(),
            }),
            (x, y) => out.push(Change::Changed {
                path: path_(),
                from: x.cloned().unwrap_or(Value::Null),
                to: y.cloned().unwrap_or(Value::Null),
            }),
        }
    }
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out
}

/// Opens `text` in `$VISUAL`/`$EDITOR` (else `vi`) and returns what was saved.
fn edit_in_editor(text: &str) -> Result<String, Failure> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".into());
    // The message may hold a customer's address or a payment token: a file only its owner may
    // read (0600, created anew, never an existing path), deleted when done.
    let mut file = tempfile::Builder::new()
        .prefix("omsctl-dlq-")
        .suffix(".json")
        .tempfile()
        .context("creating the file to edit")?;
    let path = file.path().to_path_buf();
    std::io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut file))
        .with_context(|| format!("writing {}", path.display()))?;
    // Through the shell, so `EDITOR="code --wait"` works as in git.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("omsctl")
        .arg(&path)
        .status();
    let edited = std::fs::read_to_string(&path);
    drop(file);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(Failure::verdict(format!(
                "the editor ({editor}) exited with {s}; nothing sent"
            )))
        }
        Err(e) => {
            return Err(Failure::usage(format!(
                "cannot run the editor {editor:?}: {e}"
            )))
        }
    }
    Ok(edited.with_context(|| format!("reading back {}", path.display()))?)
}

/// The edited value of `e` for `to` (`patch` is a merge patch file; none: an edit in the
/// editor), checked against the contracts before anything is sent.
pub fn edited(
    ctx: &Ctx,
    e: &Entry,
    to: &str,
    patch: Option<&Path>,
) -> Result<(Vec<u8>, Edit), Failure> {
    let original = e.record.value.clone().unwrap_or_default();
    let new_value: Vec<u8> = if let Some(path) = patch {
        let patch_text = std::fs::read_to_string(path)
            .map_err(|err| Failure::usage(format!("cannot read {}: {err}", path.display())))?;
        let patch: Value = serde_json::from_str(&patch_text).map_err(|err| {
            Failure::usage(format!("{}: not a JSON merge patch: {err}", path.display()))
        })?;
        let mut doc: Value = serde_json::from_slice(&original).map_err(|_| {
            Failure::usage(format!(
                "{}'s value is not JSON, so it cannot be patched: use --edit",
                e.id
            ))
        })?;
        merge(&mut doc, &patch);
        serde_json::to_vec(&doc)?
    } else {
        let text = match serde_json::from_slice::<Value>(&original) {
            Ok(doc) => serde_json::to_string_pretty(&doc)?,
            Err(_) => String::from_utf8_lossy(&original).into_owned(),
        };
        let saved = edit_in_editor(&text)?;
        // Stored compact, as the services write it.
        match serde_json::from_str::<Value>(&saved) {
            Ok(doc) => serde_json::to_vec(&doc)?,
            Err(_) => saved.into_bytes(),
        }
    };
    let unprefixed = to.strip_prefix(ctx.topics.prefix()).unwrap_or(to);
    let message = crate::produce::Outgoing {
        key: e.record.key.clone(),
        headers: Vec::new(),
        value: Some(new_value.clone()),
    };
    // A topic outside the contracts (a quarantine topic) takes any envelope that decodes.
    let contract_topic = oms_contracts::topics::ALL.contains(&unprefixed);
    let check = if contract_topic {
        crate::produce::validate(&message, unprefixed).map(|_| ())
    } else {
        Envelope::decode(&new_value)
            .map(|_| ())
            .map_err(|err| format!("{err} ({})", err.class()))
    };
    check.map_err(|why| {
        Failure::usage(format!(
            "the edited {} breaks the contract: {why}; nothing sent",
            e.id
        ))
    })?;
    let before: Value = serde_json::from_slice(&original)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&original).into_owned()));
    let after: Value = serde_json::from_slice(&new_value)?;
    let edit = Edit {
        changes: changes(&before, &after),
        value: String::from_utf8_lossy(&new_value).into_owned(),
    };
    Ok((new_value, edit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patches_follow_rfc_7396() {
        // The examples of RFC 7396, section 3.
        let mut doc = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"], "content": "This will be unchanged"});
        merge(
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
            merge(&mut t, &patch);
            assert_eq!(t, result, "{target} + {patch}");
        }
    }

    #[test]
    fn changes_name_every_changed_leaf_by_its_pointer() {
        let before = json!({"payload": {"paymentToken": "tok_visa", "amount": {"units": 5}}, "a/b": 1, "gone": true});
        let after = json!({"payload": {"paymentToken": "tok_mastercard", "amount": {"units": 5}}, "a/b": 2, "new": [1]});
        let found = changes(&before, &after);
        // The wire form the audit keeps: `{path, from, to}`, `{path, added}`, `{path, removed}`.
        assert_eq!(
            serde_json::to_value(&found).expect("json"),
            json!([
                {"path": "/a~1b", "from": 1, "to": 2},
                {"path": "/gone", "removed": true},
                {"path": "/new", "added": [1]},
                {"path": "/payload/paymentToken", "from": "tok_visa", "to": "tok_mastercard"},
            ])
        );
        let back: Vec<Change> = serde_json::from_value(serde_json::to_value(&found).expect("json"))
            .expect("reads back");
        assert_eq!(back, found);
        assert_eq!(found[1].line(), "/gone: removed (was true)");
        assert_eq!(
            found[3].line(),
            "/payload/paymentToken: \"tok_visa\" -> \"tok_mastercard\""
        );
        assert!(changes(&before, &before).is_empty());
        assert_eq!(
            changes(&json!("x"), &json!({"a": 1})),
            vec![Change::Changed {
                path: String::new(),
                from: json!("x"),
                to: json!({"a": 1})
            }]
        );
    }
}
