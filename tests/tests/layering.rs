//! The layering of omsctl, its operations library and the service runtime, read from their imports: no group of modules
//! may import each other in a loop (a loop means neither can be understood, tested or moved out
//! without the other). Test code is left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module and the modules it imports, by name.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The text of a file without its test module and comment lines.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The first path segments named after `prefix` (`crate::`, `super::`): `crate::a::b` gives
/// `a`, `crate::{a, b::c}` gives `a` and `b`.
fn segments_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || c != '{' {
                    item.push(c);
                }
            }
            out.insert(ident(&item));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// The graph of the top-level modules of a crate's `src` (a file `x.rs` or a folder `x/`).
fn top_level(src: &Path) -> Graph {
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).into_iter().flatten().flatten() {
        let p = entry.path();
        let Some(stem) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if p.is_dir() {
            modules.entry(stem).or_default().extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") && stem != "main" && stem != "lib" {
            modules.entry(stem).or_default().push(p);
        }
    }
    graph(&modules, |code| segments_after(code, "crate::"))
}

/// The graph of the files of a folder module `crate::name` (each `x.rs` in it, `mod.rs` as
/// `mod`), from their `super::` and `crate::name::` imports.
fn children(dir: &Path, name: &str) -> Graph {
    let modules: BTreeMap<String, Vec<PathBuf>> = rust_files(dir)
        .into_iter()
        .filter(|p| p.parent() == Some(dir))
        .filter_map(|p| Some((p.file_stem()?.to_string_lossy().into_owned(), vec![p])))
        .collect();
    let own = format!("crate::{name}::");
    graph(&modules, |code| {
        let mut out = segments_after(code, "super::");
        out.extend(segments_after(code, &own));
        out
    })
}

fn graph(
    modules: &BTreeMap<String, Vec<PathBuf>>,
    imports: impl Fn(&str) -> BTreeSet<String>,
) -> Graph {
    modules
        .iter()
        .map(|(name, files)| {
            let uses = files
                .iter()
                .flat_map(|f| imports(&code_of(f)))
                .filter(|m| m != name && modules.contains_key(m))
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

/// The groups of more than one module that reach each other.
fn loops(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for (m, r) in &reached {
        let group: BTreeSet<String> = r
            .iter()
            .filter(|n| reached.get(n).is_some_and(|back| back.contains(*m)))
            .cloned()
            .collect();
        if group.len() > 1 && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

#[test]
fn no_modules_of_omsctl_its_library_or_the_runtime_import_each_other() {
    let root = root();
    let mut found = Vec::new();
    // Each crate with at least this many top-level modules: a reader that finds fewer is broken.
    for (src, least) in [
        ("omsctl/src", 3),
        ("ops/src", 15),
        ("services/runtime/src", 10),
    ] {
        let dir = root.join(src);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        let g = top_level(&dir);
        assert!(g.len() >= least, "{src}: only {} modules read", g.len());
        for group in loops(&g) {
            found.push(format!("{src}: {group:?}"));
        }
        for (name, _) in g.iter().filter(|(n, _)| dir.join(n).is_dir()) {
            for group in loops(&children(&dir.join(name), name)) {
                found.push(format!("{src}/{name}: {group:?}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn imports_are_read_from_paths_and_groups_and_loops_are_found() {
    let code = "use crate::a::X;\nuse crate::{b, c::{D, E}, d::F};\nlet x = crate::e::f();\nuse xcrate::g;";
    let got = segments_after(code, "crate::");
    assert_eq!(got, ["a", "b", "c", "d", "e"].map(String::from).into());
    let g: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(loops(&g), vec![["a", "b", "c"].map(String::from).into()]);
    let mut layered = g.clone();
    layered.insert("c".into(), BTreeSet::new());
    assert!(loops(&layered).is_empty());
}
