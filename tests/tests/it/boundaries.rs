//! What each crate's users compile (ARCHITECTURE.md): a connector never
//! builds the issuer's AWS services, and a verifier-only build of oidc-core
//! stays small. Read from `cargo tree`, as an operator would check it.
//!
//! And inside each crate, its modules import one way (ARCHITECTURE.md):
//! no two top-level modules name each other, directly or around a cycle.
//! Read from the sources themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// `cargo tree` of `package` (normal dependencies), one crate name per line.
fn tree(package: &str, extra: &[&str]) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .current_dir(e2e::workspace_path(""))
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{p}",
        ])
        .args(extra)
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn a_connector_build_has_no_kms_or_secrets_manager_sdk() {
    for features in [&[][..], &["--all-features"][..]] {
        let crates = tree("connector-client", features);
        assert!(
            crates.iter().any(|c| c == "aws-sigv4"),
            "aws-iam is a default feature: {crates:?}"
        );
        for issuer_side in ["aws-sdk-kms", "aws-sdk-secretsmanager", "aws-sdk-dynamodb"] {
            assert!(
                !crates.iter().any(|c| c == issuer_side),
                "connector-client {features:?} compiles {issuer_side}"
            );
        }
    }
}

#[test]
fn a_verifier_only_oidc_core_stays_small() {
    let crates = tree("oidc-core", &["--no-default-features"]);
    // 32 distinct crates when this test was written (issue 26); a few more
    // is a dependency's update, many more a feature that leaked into the
    // default build.
    assert!(crates.len() <= 40, "{} crates: {crates:?}", crates.len());
    assert!(!crates.iter().any(|c| c.starts_with("aws-")), "{crates:?}");
}

/// Which of a crate's top-level modules each one names.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn crate_modules_have_no_cycle() {
    for krate in ["oidc-server", "oidc-core", "connector-client"] {
        let graph = module_graph(&e2e::workspace_path(&format!("{krate}/src")));
        // A parser that finds nothing finds no cycle either: it must at
        // least see the crate's modules and some imports between them.
        assert!(graph.len() >= 5, "{krate}: {graph:?}");
        assert!(
            graph.values().any(|named| !named.is_empty()),
            "{krate}: {graph:?}"
        );
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{krate}: the modules {} import each other in a cycle; move what the lower one needs \
                 below both (the graph: {graph:?})",
                cycle.join(" -> ")
            );
        }
    }
}

/// The reader and the cycle search on a made-up crate: each way of naming
/// a module counts, a comment does not, and the cycle is reported.
#[test]
fn the_module_graph_reads_every_way_a_module_is_named() {
    let graph = graph_of(&[
        (
            "lib.rs",
            "mod a;\nmod b;\nmod c;\nmod d;\npub use d::{Thing, Other as Renamed};\n",
        ),
        (
            "a.rs",
            "use crate::b::X; // crate::c, only in a comment\n/// crate::d too\n",
        ),
        ("b/mod.rs", "mod inner;\nuse self::inner::f;\n"),
        (
            "b/inner.rs",
            "fn f() { super::super::c::g(); super::sibling(); }\n",
        ),
        ("c.rs", "use crate::{\n    d::{Y, Z},\n    c::W,\n};\n"),
        // A `//` in a string cuts nothing; the comment after it is cut.
        (
            "c/url.rs",
            "const URL: &str = \"https://example.com\"; type T = crate::d::Y; // crate::a\n",
        ),
        (
            "d.rs",
            "fn f() -> crate::Thing { crate::Renamed::new(); $crate::a::make() }\n",
        ),
    ]);
    let expected: Graph = [("a", &["b"][..]), ("b", &["c"]), ("c", &["d"]), ("d", &["a"])]
        .into_iter()
        .map(|(module, named)| (module.to_owned(), named.iter().map(|n| n.to_string()).collect()))
        .collect();
    assert_eq!(graph, expected);
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "d", "a"]);
    let mut acyclic = graph;
    acyclic.get_mut("d").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);
}

/// The module graph of the crate whose `lib.rs` is in `src`.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, src, &mut files);
    let files: Vec<(String, String)> = files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(src.join(&path)).unwrap();
            (path, text)
        })
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    graph_of(&files)
}

/// Every `.rs` file below `dir`, as a path relative to `src` with `/`
/// separators; `bin/` holds binaries, not modules of the library.
fn rust_files(src: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let relative = path.strip_prefix(src).unwrap();
        if path.is_dir() && relative != Path::new("bin") {
            rust_files(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let parts: Vec<_> = relative.iter().map(|p| p.to_string_lossy()).collect();
            out.push(parts.join("/"));
        }
    }
}

/// The graph of `files` (path relative to `src`, text). A top-level module
/// is a file or folder beside `lib.rs` (`main.rs` is the binary). It names
/// another by `crate::other`, `crate::{other, ...}`, `super::` climbing to
/// the crate root, or an item `lib.rs` re-exports from it
/// (`pub use other::Item`); naming itself does not count.
fn graph_of(files: &[(&str, &str)]) -> Graph {
    let module_of = |path: &str| -> Option<String> {
        let first = path.split('/').next()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        (!matches!(name, "lib" | "main")).then(|| name.to_owned())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|(path, _)| module_of(path)).collect();
    // `crate::Item` of `pub use module::...::Item` in lib.rs is the module's.
    let mut reexported: BTreeMap<String, String> = BTreeMap::new();
    if let Some((_, lib)) = files.iter().find(|(path, _)| *path == "lib.rs") {
        let lib = without_comments(lib);
        for statement in lib.split(';') {
            let Some((_, path)) = statement.split_once("pub use ") else {
                continue;
            };
            let path = path.trim().trim_start_matches("crate::");
            let Some((module, rest)) = path.split_once("::") else {
                continue;
            };
            for name in identifiers(rest) {
                if !modules.contains(name) && name != "as" && name != "self" {
                    reexported.insert(name.to_owned(), module.to_owned());
                }
            }
        }
    }
    let mut graph: Graph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (path, text) in files {
        let Some(module) = module_of(path) else {
            continue;
        };
        // How many `super::` reach the crate root from this file:
        // `a.rs` and `a/mod.rs` are one level down, `a/b.rs` two.
        let depth = path.split('/').count() - usize::from(path.ends_with("/mod.rs"));
        for name in root_names(&without_comments(text), depth) {
            let target = reexported.get(&name).cloned().unwrap_or(name);
            if target != module && modules.contains(&target) {
                graph.get_mut(&module).unwrap().insert(target);
            }
        }
    }
    graph
}

/// `text` without `//` comments (doc comments included). A `//` counts
/// only at the start of a line or after a space, so `https://` in a
/// string stays.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let cut = line
                .match_indices("//")
                .find(|(at, _)| *at == 0 || line[..*at].ends_with(char::is_whitespace))
                .map_or(line.len(), |(at, _)| at);
            &line[..cut]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment after every `crate::` (or `depth` times
/// `super::`, which is the crate root too) in `code`; for a group
/// (`crate::{a, b::c}`), the first segment of each of its items.
fn root_names(code: &str, depth: usize) -> Vec<String> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut names = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let before = code[..at].chars().next_back();
        let starts_path = !before.is_some_and(|c| is_ident(c) || c == ':');
        let after = if !starts_path {
            None
        } else if let Some(after) = rest.strip_prefix("crate::") {
            Some(after)
        } else if rest.starts_with("super::") {
            let mut after = rest;
            let mut supers = 0;
            while let Some(next) = after.strip_prefix("super::") {
                after = next;
                supers += 1;
            }
            (supers == depth).then_some(after)
        } else {
            None
        };
        match after {
            Some(after) if after.starts_with('{') => {
                let group = &after[1..group_end(after)];
                for item in split_top_level(group) {
                    names.extend(identifiers(item).next().map(str::to_owned));
                }
            }
            Some(after) => names.extend(identifiers(after).next().map(str::to_owned)),
            None => {}
        }
        at += rest.chars().next().map_or(1, char::len_utf8);
    }
    names
}

/// The index of the `}` that closes the group `text` starts with.
fn group_end(text: &str) -> usize {
    let mut depth = 0;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The items of a group's inside, split at the commas outside nested groups.
fn split_top_level(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The identifiers in `text`, in order.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with(|c: char| c.is_alphabetic() || c == '_'))
}

/// A cycle of `graph` (its first module repeated at the end), if any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'g>(
        graph: &'g Graph,
        module: &'g str,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = path[start..].iter().map(|m| m.to_string()).collect();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}
