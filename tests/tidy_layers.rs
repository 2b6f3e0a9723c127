//! Tidy: modules are layered. Within any parent module the children may use each
//! other in one direction only; a cycle among siblings (`server → client → mq →
//! server`) fails, naming one file:line for each of its edges. Checked for the
//! library (`src/lib.rs`, whose code names its root `crate`) and the simulation
//! harness (`sim/mod.rs`, which tests/sim.rs and tests/harness.rs include with
//! `#[path = "../sim/mod.rs"] mod sim;`, so its code names its root `crate::sim`).
//!
//! The trees are walked from their root files along `mod` declarations (with
//! `#[path]`), so files of other crates (`src/bin/`, lincheck's `sim/pure.rs`) are
//! not counted, and inline `mod name { … }` blocks are modules like any other.
//! References are `use` trees and inline paths (`crate::…`, `super::…`, `self::…`,
//! and paths starting with a child module or an imported name), read with comments
//! and literals dropped ([`lexer`]). A reference from module A to module B is an
//! edge between the children of their lowest common ancestor that contain A and
//! B; a reference to one's own ancestor or descendant is none. A cycle is a
//! strongly connected component of more than one sibling.
//!
//! Test modules count (`#[cfg(test)] mod tests`, inline or in a `tests.rs`): they
//! are code that `cargo test` compiles, and a test that reaches into a sibling
//! ties the layers together as production code does. Edges made only there are
//! marked `(test code)`, since they are often the cheapest to cut.
//!
//! Re-exports are followed ([`modules`]): a path to an item a module imports (`pub
//! use self::child::A`, `use child::{A, B as C}`, at any visibility, since a
//! module's descendants reach its private imports too) resolves to where the import
//! points, and a glob (`pub use child::*`) is followed for items that `child`
//! defines by name. Not followed: items made by macros or `include!` (proto's
//! generated modules), names a glob import brings in used bare (`use super::*;
//! Thing`), and chains of more than eight imports.

// A test crate's root looks for modules beside it, in tests/.
#[path = "tidy_layers/lexer.rs"]
mod lexer;
#[path = "tidy_layers/modules.rs"]
mod modules;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use modules::{load, package_root, relative, Loc, ModPath, Model, Tree};

/// Cycles tolerated while they are being broken, as (tree, parent module, sorted
/// members): none are left. The test fails on any cycle not listed here and on a
/// listed one that is gone, so this list only shrinks.
const KNOWN_CYCLES: &[Known] = &[];

const SRC: Tree = Tree {
    name: "src",
    root_file: "src/lib.rs",
    prefix: &["crate"],
};

const SIM: Tree = Tree {
    name: "sim",
    root_file: "sim/mod.rs",
    prefix: &["crate", "sim"],
};

/// Files under `src/` and `sim/` that belong to other crates (relative paths; a
/// trailing `/` covers a folder).
const OTHER_CRATES: &[&str] = &["src/bin/", "sim/pure.rs", "sim/getrandom/"];

// ---------------------------------------------------------------- sibling graphs

/// One place that makes an edge: production code if any does, then the first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Witness {
    test_only: bool,
    at: Loc,
}

impl Witness {
    /// Marks edges made only in test code, often the cheapest to cut.
    fn tag(&self) -> &'static str {
        if self.test_only {
            " (test code)"
        } else {
            ""
        }
    }
}

/// Sibling edges under each parent module.
type Graphs = BTreeMap<ModPath, BTreeMap<(String, String), Witness>>;

fn sibling_graphs(model: &Model) -> Graphs {
    let mut graphs = Graphs::new();
    for r in &model.refs {
        let Some(target) = model.target(&r.module, &r.path) else {
            continue;
        };
        let Some((parent, from, to)) = sibling_edge(&r.module, &target) else {
            continue;
        };
        let witness = Witness {
            test_only: model.in_test_code(&r.module),
            at: r.at.clone(),
        };
        let edges = graphs.entry(parent).or_default();
        let best = edges.entry((from, to)).or_insert(witness.clone());
        *best = best.clone().min(witness);
    }
    graphs
}

/// The edge `from → to` makes between the children of their lowest common
/// ancestor; none when one contains the other.
fn sibling_edge(from: &[String], to: &[String]) -> Option<(ModPath, String, String)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((
        from[..common].to_vec(),
        from[common].clone(),
        to[common].clone(),
    ))
}

/// Tarjan's strongly connected components, over sibling names.
struct Tarjan<'a> {
    successors: BTreeMap<&'a str, Vec<&'a str>>,
    index: BTreeMap<&'a str, usize>,
    low: BTreeMap<&'a str, usize>,
    stack: Vec<&'a str>,
    components: Vec<Vec<String>>,
}

impl<'a> Tarjan<'a> {
    /// The components of more than one node, each sorted.
    fn cycles(edges: impl Iterator<Item = &'a (String, String)>) -> Vec<Vec<String>> {
        let mut successors: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in edges {
            successors.entry(from).or_default().push(to);
        }
        let mut tarjan = Tarjan {
            successors,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            components: Vec::new(),
        };
        let nodes: Vec<&str> = tarjan.successors.keys().copied().collect();
        for node in nodes {
            if !tarjan.index.contains_key(node) {
                tarjan.visit(node);
            }
        }
        tarjan.components.retain(|c| c.len() > 1);
        tarjan.components.sort();
        tarjan.components
    }

    fn visit(&mut self, node: &'a str) {
        let n = self.index.len();
        self.index.insert(node, n);
        self.low.insert(node, n);
        self.stack.push(node);
        for next in self.successors.get(node).cloned().unwrap_or_default() {
            if !self.index.contains_key(next) {
                self.visit(next);
                self.low.insert(node, self.low[node].min(self.low[next]));
            } else if self.stack.contains(&next) {
                self.low.insert(node, self.low[node].min(self.index[next]));
            }
        }
        if self.low[node] == self.index[node] {
            let root = self.stack.iter().rposition(|&m| m == node).unwrap();
            let mut component: Vec<String> = self.stack.drain(root..).map(str::to_owned).collect();
            component.sort();
            self.components.push(component);
        }
    }
}

// ---------------------------------------------------------------- cycles and their report

#[derive(Debug)]
struct Cycle {
    tree: &'static str,
    /// `a::b`; empty for the root.
    parent: String,
    members: Vec<String>,
    /// Every edge among the members, with one place that makes it.
    edges: Vec<(String, String, Witness)>,
}

fn cycles(tree: &Tree) -> Vec<Cycle> {
    let mut found = Vec::new();
    for (parent, edges) in sibling_graphs(&load(tree)) {
        for members in Tarjan::cycles(edges.keys()) {
            let inside =
                |(from, to): &(String, String)| members.contains(from) && members.contains(to);
            let edges = edges
                .iter()
                .filter(|(edge, _)| inside(edge))
                .map(|((from, to), witness)| (from.clone(), to.clone(), witness.clone()))
                .collect();
            found.push(Cycle {
                tree: tree.name,
                parent: parent.join("::"),
                members,
                edges,
            });
        }
    }
    found
}

impl Cycle {
    /// A shortest closed walk from the first member (breadth-first), e.g.
    /// `["a", "b", "a"]`: the headline; the edge list says what else to cut.
    fn walk(&self) -> Vec<&str> {
        let start = self.members[0].as_str();
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for (_, to, _) in self.edges.iter().filter(|(from, _, _)| from == node) {
                if to == start {
                    let mut walk = vec![start, node];
                    while let Some(prev) = came_from.get(walk.last().unwrap()) {
                        walk.push(prev);
                    }
                    walk.reverse();
                    return walk;
                }
                if !came_from.contains_key(to.as_str()) && to != start {
                    came_from.insert(to, node);
                    queue.push_back(to);
                }
            }
        }
        unreachable!("a strongly connected component has a cycle through each member")
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let under = match self.parent.as_str() {
            "" => String::new(),
            parent => format!(" (under {parent})"),
        };
        let walk = self.walk();
        write!(f, "{}{under}: {}", self.tree, walk.join(" → "))?;
        if self.members.len() > walk.len() - 1 {
            write!(f, ", in the cycle among {}", self.members.join(", "))?;
        }
        for (from, to, witness) in &self.edges {
            write!(f, "\n    {from} → {to}  {}{}", witness.at, witness.tag())?;
        }
        Ok(())
    }
}

/// A listed cycle: (tree, parent module, sorted members).
type Known<'a> = (&'a str, &'a str, &'a [&'a str]);

impl Cycle {
    fn is(&self, (tree, parent, members): &Known) -> bool {
        self.tree == *tree && self.parent == *parent && self.members == *members
    }

    /// Whether every member of `known` is one of this cycle's.
    fn contains(&self, (tree, parent, members): &Known) -> bool {
        let inside = members.iter().all(|m| self.members.iter().any(|n| n == m));
        self.tree == *tree && self.parent == *parent && inside
    }

    /// Whether every member of this cycle is one of `known`'s.
    fn within(&self, (tree, parent, members): &Known) -> bool {
        let inside = self.members.iter().all(|m| members.contains(&m.as_str()));
        self.tree == *tree && self.parent == *parent && inside
    }
}

fn listed((tree, parent, members): &Known) -> String {
    format!("KNOWN_CYCLES lists ({tree:?}, {parent:?}, &{members:?})")
}

/// What is wrong with `found` against `known`: new cycles, and listed ones that
/// shrank, were broken, or grew into a new one.
fn ratchet(found: &[Cycle], known: &[Known]) -> Vec<String> {
    let mut problems = Vec::new();
    for cycle in found.iter().filter(|c| !known.iter().any(|k| c.is(k))) {
        match known.iter().find(|k| cycle.within(k)) {
            Some(k) => problems.push(format!("{}; it shrank: list {cycle}", listed(k))),
            None => problems.push(format!("new module cycle {cycle}")),
        }
    }
    for entry in known.iter().filter(|k| !found.iter().any(|c| c.is(k))) {
        if found.iter().any(|c| c.contains(entry)) {
            problems.push(format!(
                "{}, now part of a larger new cycle (above)",
                listed(entry)
            ));
        } else if !found.iter().any(|c| c.within(entry)) {
            let gone = "which is gone: delete it (the list only shrinks)";
            problems.push(format!("{}, {gone}", listed(entry)));
        }
    }
    problems
}

// ---------------------------------------------------------------- tests

#[test]
fn sibling_modules_have_no_new_cycles() {
    let found: Vec<Cycle> = [SRC, SIM].iter().flat_map(cycles).collect();
    let problems = ratchet(&found, KNOWN_CYCLES);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The walk along `mod` declarations reaches every file of the trees, so none is
/// silently left out of the check.
#[test]
fn every_file_is_in_a_module_tree() {
    let mut in_trees = BTreeSet::new();
    for tree in [SRC, SIM] {
        in_trees.extend(load(&tree).modules.into_values().map(|m| m.file));
    }
    let mut files = Vec::new();
    for dir in ["src", "sim"] {
        rust_files(&package_root().join(dir), &mut files);
    }
    let missed: Vec<String> = files
        .iter()
        .map(|f| relative(f))
        .filter(|rel| !OTHER_CRATES.iter().any(|o| rel.starts_with(o)))
        .filter(|rel| !in_trees.contains(rel))
        .collect();
    assert!(missed.is_empty(), "files in no module tree: {missed:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

const PLANTED: Tree = Tree {
    name: "planted",
    root_file: "tests/tidy/cycles/planted/lib.rs",
    prefix: &["crate"],
};

const CLEAN: Tree = Tree {
    name: "clean",
    root_file: "tests/tidy/cycles/clean/lib.rs",
    prefix: &["crate"],
};

/// `a` uses `b` through a nested brace `use`, `b` uses `a` through an inline path:
/// exactly that cycle is reported, with both edges where they are made.
#[test]
fn a_planted_cycle_is_reported_with_its_edges() {
    let found = cycles(&PLANTED);
    let [cycle] = found.as_slice() else {
        panic!("expected one cycle, found {found:#?}");
    };
    assert_eq!(
        (cycle.parent.as_str(), cycle.members.join(" ")),
        ("", "a b".into())
    );
    let edges: Vec<String> = cycle
        .edges
        .iter()
        .map(|(from, to, witness)| format!("{from} → {to} {}", witness.at))
        .collect();
    let dir = "tests/tidy/cycles/planted";
    assert_eq!(
        edges,
        [
            format!("a → b {dir}/a.rs:{}", marker_line("planted/a.rs", "EDGE")),
            format!("b → a {dir}/b.rs:{}", marker_line("planted/b.rs", "EDGE")),
        ]
    );
    assert_eq!(cycle.walk(), ["a", "b", "a"]);
}

/// Paths in comments and literals, parent/child references, and re-exports (named
/// and glob) make no cycle, and the edges that are there are found, those of an
/// inline test module included.
#[test]
fn a_clean_tree_has_only_its_real_edges() {
    assert!(cycles(&CLEAN).is_empty(), "{:#?}", cycles(&CLEAN));
    let edges: Vec<String> = sibling_graphs(&load(&CLEAN))
        .into_iter()
        .flat_map(|(parent, edges)| {
            let parent = parent.join("::");
            edges.into_iter().map(move |((from, to), witness)| {
                format!("{parent}: {from} → {to}{}", witness.tag())
            })
        })
        .collect();
    assert_eq!(
        edges,
        [
            // b's `use crate::{a, c::{self, Top}}`, c::high's `crate::a::f()`.
            ": b → a",
            ": b → c",
            ": c → a",
            // `super::Thing` (named re-export), `super::Top` (glob re-export).
            "c: high → low",
            "c: user → high",
            // `super::super::low::Thing` in user's inline `#[cfg(test)] mod tests`.
            "c: user → low (test code)",
        ]
    );
}

/// The list fails both ways: on a cycle not in it, and on an entry that is not a
/// cycle any more (grown, shrunk or gone).
#[test]
fn the_ratchet_fails_on_new_and_on_changed_cycles() {
    let found = cycles(&PLANTED);
    let planted: &[Known] = &[("planted", "", &["a", "b"])];
    assert_eq!(ratchet(&found, planted), Vec::<String>::new());
    let new = ratchet(&found, &[]);
    assert!(
        new.len() == 1 && new[0].starts_with("new module cycle planted: a → b → a\n"),
        "{new:?}"
    );
    // Listed members now inside a larger cycle: that one is new, the entry outgrown.
    let grown = ratchet(&found, &[("planted", "", &["a"])]);
    assert!(
        grown.len() == 2 && grown[1].ends_with("now part of a larger new cycle (above)"),
        "{grown:?}"
    );
    // Fewer members than listed: the entry is to be replaced by the smaller cycle.
    let shrunk = ratchet(&found, &[("planted", "", &["a", "b", "x"])]);
    assert!(
        shrunk.len() == 1 && shrunk[0].contains("it shrank: list planted: a → b → a"),
        "{shrunk:?}"
    );
    let gone = ratchet(&[], planted);
    assert!(
        gone.len() == 1 && gone[0].contains("which is gone"),
        "{gone:?}"
    );
}

/// The line number of the first line in `tests/tidy/cycles/<file>` with `marker`.
fn marker_line(file: &str, marker: &str) -> usize {
    let path = package_root().join("tests/tidy/cycles").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    1 + text
        .lines()
        .position(|l| l.contains(marker))
        .expect("marker")
}
