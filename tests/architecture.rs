//! The shape of `src/`, checked: wiring runs one way (no import cycle between files, nor between
//! the top-level modules), and no file grows past 450 lines. Imports are read from the source
//! text: `use` trees and `crate::`/`super::`/`self::` paths, each resolved to the file of the
//! deepest module it names (a parent's `mod child;` is structure, not an import).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 450;

/// A module path such as `["domain", "service"]` (the crate root is `[]`).
type ModPath = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library file under `src/` with its module path (the binary's `main.rs` is a crate of
/// its own and left out).
fn modules() -> BTreeMap<ModPath, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut map = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src()).unwrap();
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let last = parts.pop().unwrap();
        match last.as_str() {
            "main.rs" if parts.is_empty() => continue,
            "lib.rs" if parts.is_empty() => {}
            "mod.rs" => {}
            name => parts.push(name.trim_end_matches(".rs").to_string()),
        }
        map.insert(parts, file);
    }
    map
}

/// The source without comments, string literals and the unit-test module at its end.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i + 1 < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal such as '{' (not a lifetime).
            let end = text[i + 1..].find('\'').map_or(b.len(), |e| i + 2 + e);
            i = end;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into full paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    fn go(prefix: &[String], t: &str, out: &mut Vec<Vec<String>>) {
        if let Some(open) = t.find('{') {
            let head: Vec<String> = t[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let inner = &t[open + 1..t.rfind('}').unwrap_or(t.len())];
            let mut depth = 0;
            let mut start = 0;
            let mut base = prefix.to_vec();
            base.extend(head);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        go(&base, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            go(&base, &inner[start..], out);
        } else if !t.is_empty() {
            let mut path = prefix.to_vec();
            let t = t.split('@').next().unwrap_or(t);
            path.extend(
                t.split("::")
                    .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
                    .map(String::from),
            );
            out.push(path);
        }
    }
    let mut out = Vec::new();
    go(&[], &tree, &mut out);
    out
}

/// The paths a file's code names: its `use` trees, and paths that start at `crate::`,
/// `super::`, `self::` or one of the module's `children`.
fn named_paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after = &rest[at + 4..];
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            if let Some(end) = after.find(';') {
                paths.extend(expand(&after[..end]));
            }
        }
        rest = after;
    }
    let idents = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let roots: Vec<String> = ["crate", "super", "self"]
        .iter()
        .map(|r| r.to_string())
        .chain(children.iter().cloned())
        .map(|r| format!("{r}::"))
        .collect();
    for root in &roots {
        let root = root.as_str();
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            if before.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':') {
                let segs = idents(&rest[at..]);
                if segs.len() > 1 {
                    paths.push(segs);
                }
            }
            rest = &rest[at + root.len()..];
        }
    }
    paths
}

/// What each module re-exports (`pub use`): item name -> the module that defines it.
type Reexports = BTreeMap<(ModPath, String), ModPath>;

/// The module a path refers into, from the module `here`, following re-exports to the file
/// that defines the item.
fn resolve(
    here: &ModPath,
    path: &[String],
    known: &BTreeMap<ModPath, PathBuf>,
    reexports: &Reexports,
) -> Option<ModPath> {
    let mut abs: ModPath = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" => here.clone(),
        "super" => {
            let mut m = here.clone();
            m.pop();
            m
        }
        first => {
            // A child module in scope, or an outside crate (ignored).
            let mut m = here.clone();
            m.push(first.to_string());
            if !known.contains_key(&m) {
                return None;
            }
            m.pop();
            m
        }
    };
    let mut segs = path;
    if matches!(path[0].as_str(), "crate" | "self" | "super") {
        segs = &path[1..];
        while segs.first().is_some_and(|s| s == "super") {
            abs.pop();
            segs = &segs[1..];
        }
    }
    let mut deepest = known.contains_key(&abs).then(|| abs.clone());
    let mut item = None;
    for s in segs {
        abs.push(s.clone());
        if known.contains_key(&abs) {
            deepest = Some(abs.clone());
        } else {
            item = Some(s.clone());
            break;
        }
    }
    let mut target = deepest?;
    // Through a hub's `pub use` to the defining file (a few hops at most).
    for _ in 0..4 {
        match item
            .as_ref()
            .and_then(|i| reexports.get(&(target.clone(), i.clone())))
        {
            Some(next) if *next != target => target = next.clone(),
            _ => break,
        }
    }
    Some(target)
}

/// Every module's `pub use` items, resolved to their defining modules.
fn reexports(known: &BTreeMap<ModPath, PathBuf>) -> Reexports {
    let mut map = Reexports::new();
    for (module, file) in known {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let mut rest = code.as_str();
        while let Some(at) = rest.find("pub use ") {
            let after = &rest[at + 8..];
            if let Some(end) = after.find(';') {
                for path in expand(&after[..end]) {
                    if let (Some(name), Some(target)) = (
                        path.last(),
                        resolve(module, &path, known, &Reexports::new()),
                    ) {
                        map.insert((module.clone(), name.clone()), target);
                    }
                }
            }
            rest = after;
        }
    }
    map
}

fn graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let known = modules();
    let reexports = reexports(&known);
    let mut edges = BTreeMap::new();
    for (module, file) in &known {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        let children: Vec<String> = known
            .keys()
            .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
            .filter_map(|k| k.last().cloned())
            .collect();
        let mut out = BTreeSet::new();
        // A unit-test module in a file of its own (`#[cfg(test)] mod tests;`) is no part of the
        // wiring: like a test module inline, it may use anything.
        let test_module = module.last().is_some_and(|m| m == "tests");
        if !module.is_empty() && !test_module {
            for path in named_paths(&code, &children) {
                if let Some(target) = resolve(module, &path, &known, &reexports) {
                    if &target != module && !target.is_empty() {
                        out.insert(target);
                    }
                }
            }
        }
        edges.insert(module.clone(), out);
    }
    edges
}

/// A cycle in `edges`, if there is one, as the list of nodes on it.
fn find_cycle<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        n: &N,
        edges: &BTreeMap<N, BTreeSet<N>>,
        state: &mut BTreeMap<N, u8>,
        stack: &mut Vec<N>,
    ) -> Option<Vec<N>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    let at = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn show(cycle: &[ModPath]) -> String {
    cycle
        .iter()
        .map(|m| format!("crate::{}", m.join("::")))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_file_imports_its_way_back_to_itself() {
    let edges = graph();
    if let Some(cycle) = find_cycle(&edges) {
        panic!("an import cycle between files: {}", show(&cycle));
    }
}

#[test]
fn the_top_level_modules_depend_one_way() {
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in graph() {
        let Some(a) = from.first().cloned() else {
            continue;
        };
        let entry = top.entry(a.clone()).or_default();
        for to in tos {
            if let Some(b) = to.first() {
                if *b != a {
                    entry.insert(b.clone());
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&top) {
        panic!("a cycle between top-level modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_file_is_over_the_line_limit() {
    let mut long = Vec::new();
    for file in modules().values().chain([&src().join("main.rs")]) {
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        if lines > MAX_LINES {
            long.push(format!("{} ({lines} lines)", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines: {}",
        long.join(", ")
    );
}

#[test]
fn the_checker_sees_cycles_and_use_trees() {
    let paths = expand("crate::{a::{B, c::D}, e as f, g::*}");
    assert_eq!(
        paths,
        vec![
            vec!["crate", "a", "B"],
            vec!["crate", "a", "c", "D"],
            vec!["crate", "e"],
            vec!["crate", "g"],
        ]
    );
    let mut edges: BTreeMap<u8, BTreeSet<u8>> = BTreeMap::new();
    edges.insert(1, [2].into());
    edges.insert(2, [3].into());
    edges.insert(3, [].into());
    assert_eq!(find_cycle(&edges), None);
    edges.insert(3, [1].into());
    assert_eq!(find_cycle(&edges), Some(vec![1, 2, 3, 1]));
}
