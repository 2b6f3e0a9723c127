//! Tidy: fails when the stack reaches around its seams for something that breaks
//! determinism in the simulator, and names the replacement (STYLE.md §9).

use std::path::{Path, PathBuf};

struct Rule {
    /// The rule's name: its fixture is `tests/tidy/<table>/<name>.rs`.
    name: &'static str,
    /// Substring that must not appear.
    pattern: &'static str,
    /// What to use instead.
    instead: &'static str,
    /// Files (relative paths) where the pattern is the seam itself.
    allowed_in: &'static [&'static str],
}

const STACK_RULES: &[Rule] = &[
    Rule {
        name: "thread-rng",
        pattern: "thread_rng",
        instead: "madsim::rand (seeded by the simulation)",
        allowed_in: &[],
    },
    Rule {
        name: "rand-random",
        pattern: "rand::random",
        instead: "madsim::rand::random (seeded by the simulation)",
        allowed_in: &[],
    },
    Rule {
        name: "std-instant",
        pattern: "std::time::Instant",
        instead: "the Clock seam (seams::clock)",
        allowed_in: &[],
    },
    Rule {
        name: "system-time",
        pattern: "SystemTime",
        instead: "the Clock seam (seams::clock)",
        allowed_in: &[],
    },
    Rule {
        name: "instant-now",
        pattern: "Instant::now",
        instead: "Clock::now_ms (the client library may time its own retries)",
        // tokio's Instant, madsim's in simulation: the client core times its own
        // deadlines and its real-mode tests time it; a bridge agent times its
        // broker's silence, a broker its requests and the leader's tenure.
        allowed_in: &[
            "src/seams/clock.rs",
            "src/client/connection.rs",
            "src/client/tests.rs",
            "src/library/lease.rs",
            "src/bridge/agent.rs",
            "src/bridge/broker/metrics.rs",
            // The metrics observer times Raft's writes and applies (production only:
            // the simulation keeps its own observer).
            "src/metrics/observer.rs",
        ],
    },
    Rule {
        name: "std-fs",
        pattern: "std::fs",
        instead: "the Disk seam (seams::disk)",
        // coordd reads its bridge configuration file once, at startup.
        allowed_in: &["src/seams/disk.rs", "src/bin/coordd/bridge.rs"],
    },
    Rule {
        name: "tokio-fs",
        pattern: "tokio::fs",
        instead: "the Disk seam (madsim-tokio's fs is real tokio and panics in the simulator)",
        allowed_in: &[],
    },
    Rule {
        name: "thread-spawn",
        pattern: "thread::spawn",
        instead: "a tokio task (std threads escape the simulator)",
        allowed_in: &[],
    },
    Rule {
        name: "hash-map",
        pattern: "HashMap",
        instead: "BTreeMap: iteration order must be chosen, not random",
        allowed_in: &["src/seams/disk.rs"],
    },
    Rule {
        name: "hash-set",
        pattern: "HashSet",
        instead: "BTreeSet: iteration order must be chosen, not random",
        allowed_in: &[],
    },
    Rule {
        name: "cfg-madsim",
        pattern: "cfg(madsim)",
        instead: "a seam: simulation differences live in seams and the harness entry point",
        // balancer.rs: madsim's tonic balances over tower's `Change`, real tonic
        // over its own (the same API, two types).
        allowed_in: &[
            "src/bin/coordd/main.rs",
            "src/bin/bridge-agent.rs",
            "src/seams/mutants.rs",
            // spawn_disk_job: tokio's blocking pool in real mode, a task under
            // madsim (no threads there).
            "src/seams/disk.rs",
            "src/library/balancer.rs",
            // madsim's tonic has no codec traits: the proxy is real-mode only.
            "src/bridge/broker/proxy.rs",
        ],
    },
    Rule {
        name: "tokio-watch",
        pattern: "tokio::sync::watch",
        instead: "crate::sync::watch (tokio's wakes receivers in an order drawn from a process-wide counter)",
        // The replacement says why it exists.
        allowed_in: &["src/sync/watch.rs"],
    },
    Rule {
        name: "select-unbiased",
        pattern: "select! {",
        instead: "select! with `biased;` (random branch order is entropy)",
        allowed_in: &[],
    },
];

/// Programs outside the stack and the simulator, exempt from the rules.
const OFFLINE_TOOLS: &[&str] = &["src/bin/lincheck.rs"];

const HARNESS_RULES: &[Rule] = &[
    Rule {
        name: "thread-rng",
        pattern: "rand::thread_rng",
        instead: "madsim::rand::thread_rng (seeded)",
        allowed_in: &[],
    },
    Rule {
        name: "std-instant",
        pattern: "std::time::Instant",
        instead: "tokio::time::Instant (virtual time); wall time only where runs are timed",
        allowed_in: &["sim/run/mod.rs", "sim/sweep.rs", "sim/bench.rs"],
    },
    Rule {
        name: "hash-map",
        pattern: "HashMap",
        instead: "BTreeMap",
        allowed_in: &[],
    },
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // The getrandom stand-in wraps libc on purpose.
            if !path.ends_with("getrandom") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// One broken rule.
#[derive(Debug, PartialEq)]
struct Problem {
    rule: &'static str,
    /// 1-based.
    line: usize,
    text: String,
}

/// Where the skipping of a `#[cfg(test)]` item stands: the item ends at the brace
/// that closes its first `{`, or at a `;` before any brace (`mod tests;`). Braces
/// in strings, character literals and comments do not count.
#[derive(Default)]
struct TestItem {
    depth: usize,
    opened: bool,
    in_string: bool,
    /// Inside a raw string closed by `"` and this many `#`.
    raw_hashes: Option<usize>,
    block_comments: usize,
}

impl TestItem {
    /// Reads one more line of the item; true when the item ends on it.
    fn ends_on(&mut self, line: &str) -> bool {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let next = b.get(i + 1).copied();
            if self.block_comments > 0 {
                match (b[i], next) {
                    (b'*', Some(b'/')) => self.block_comments -= 1,
                    (b'/', Some(b'*')) => self.block_comments += 1,
                    _ => {
                        i += 1;
                        continue;
                    }
                }
                i += 2;
                continue;
            }
            if let Some(hashes) = self.raw_hashes {
                let closes =
                    b[i] == b'"' && b[i + 1..].iter().take_while(|&&c| c == b'#').count() >= hashes;
                if closes {
                    self.raw_hashes = None;
                    i += hashes;
                }
                i += 1;
                continue;
            }
            if self.in_string {
                match b[i] {
                    b'\\' => i += 1,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                i += 1;
                continue;
            }
            match (b[i], next) {
                (b'/', Some(b'/')) => return false,
                (b'/', Some(b'*')) => {
                    self.block_comments += 1;
                    i += 1;
                }
                (b'r', Some(b'"' | b'#')) if starts_token(b, i) => {
                    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                    if b.get(i + 1 + hashes) == Some(&b'"') {
                        self.raw_hashes = Some(hashes);
                        i += 1 + hashes;
                    }
                }
                (b'"', _) => self.in_string = true,
                // A character literal ('{', '\'', '\\'); a lifetime has no closing quote.
                (b'\'', Some(b'\\')) => {
                    i += 3;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                }
                (b'\'', Some(_)) if b.get(i + 2) == Some(&b'\'') => i += 2,
                (b'{', _) => {
                    self.depth += 1;
                    self.opened = true;
                }
                (b'}', _) => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.opened && self.depth == 0 {
                        return true;
                    }
                }
                (b';', _) if !self.opened => return true,
                _ => {}
            }
            i += 1;
        }
        false
    }
}

/// Whether `b[i]` starts a token (`r"…"` and `br"…"` are raw strings, `for"` is not).
fn starts_token(b: &[u8], i: usize) -> bool {
    let word = |j: usize| b[j].is_ascii_alphanumeric() || b[j] == b'_';
    match i {
        0 => true,
        1 => !word(0) || b[0] == b'b',
        _ => !word(i - 1) || (b[i - 1] == b'b' && !word(i - 2)),
    }
}

/// The rules `text` (the file at `rel`) breaks. Comment lines and `#[cfg(test)]`
/// items (unit tests may use whatever they need) are skipped; code after a test
/// module is scanned like the rest.
fn scan(rel: &str, text: &str, rules: &[Rule]) -> Vec<Problem> {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut test_item: Option<TestItem> = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(item) = &mut test_item {
            if item.ends_on(line) {
                test_item = None;
            }
            continue;
        }
        if line.trim() == "#[cfg(test)]" {
            test_item = Some(TestItem::default());
            continue;
        }
        if line.trim_start().starts_with("//") {
            continue;
        }
        for rule in rules {
            if rule.allowed_in.contains(&rel) || !line.contains(rule.pattern) {
                continue;
            }
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            if rule.pattern == "select! {" && next == "biased;" {
                continue;
            }
            if rule.pattern == "rand::random" && line.contains("madsim::rand::random") {
                continue;
            }
            problems.push(Problem {
                rule: rule.name,
                line: i + 1,
                text: format!("{rel}:{}: `{}` — use {}", i + 1, rule.pattern, rule.instead),
            });
        }
    }
    problems
}

fn check(dir: &str, rules: &[Rule]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(dir), &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // An offline tool: it reads history files and never runs inside the simulator.
        if OFFLINE_TOOLS.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        problems.extend(scan(&rel, &text, rules).into_iter().map(|p| p.text));
    }
    problems
}

#[test]
fn the_stack_uses_only_its_seams() {
    let problems = check("src", STACK_RULES);
    assert!(
        problems.is_empty(),
        "determinism hazards in the stack:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_harness_draws_only_seeded_randomness() {
    let problems = check("sim", HARNESS_RULES);
    assert!(
        problems.is_empty(),
        "determinism hazards in the harness:\n{}",
        problems.join("\n")
    );
}

fn fixture(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tidy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const TABLES: &[(&str, &[Rule])] = &[("stack", STACK_RULES), ("harness", HARNESS_RULES)];

/// Each rule fires on its fixture (`tests/tidy/<table>/<rule>.rs`), a file that
/// breaks it, through the same scan as the real check — at a path no rule exempts.
#[test]
fn every_rule_fires_on_its_fixture() {
    for (table, rules) in TABLES {
        for rule in *rules {
            let text = fixture(&format!("{table}/{}.rs", rule.name));
            let fired = scan("src/fixture.rs", &text, rules);
            assert!(
                fired.iter().any(|p| p.rule == rule.name),
                "{table} rule {} did not fire on its fixture; fired: {fired:?}",
                rule.name
            );
        }
        // No fixture without a rule (a renamed rule leaves none behind).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tidy")
            .join(table);
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let rule = name.trim_end_matches(".rs");
            assert!(
                rules.iter().any(|r| r.name == rule),
                "tests/tidy/{table}/{name} names no {table} rule"
            );
        }
    }
}

/// A file of near misses — patterns in comments, the seeded and biased forms,
/// hazards inside a test module — fires nothing.
#[test]
fn a_clean_file_fires_nothing() {
    let text = fixture("clean.rs");
    for (table, rules) in TABLES {
        let fired = scan("src/fixture.rs", &text, rules);
        assert!(
            fired.is_empty(),
            "{table} rules fired on clean.rs: {fired:?}"
        );
    }
}

/// What follows a test module is scanned: only the hazard after it fires, at its
/// own line (the ones inside the module, in its strings and comments, do not).
#[test]
fn code_after_a_test_module_is_scanned() {
    let text = fixture("after_tests.rs");
    let fired: Vec<(&str, usize)> = scan("src/fixture.rs", &text, STACK_RULES)
        .iter()
        .map(|p| (p.rule, p.line))
        .collect();
    let line = text
        .lines()
        .position(|l| l.contains("AFTER THE TEST MODULE"))
        .expect("marker")
        + 2;
    assert_eq!(fired, [("thread-spawn", line)]);
}

/// An allowed file is exempt from that rule only.
#[test]
fn exemptions_are_per_rule_and_file() {
    let text = fixture("stack/hash-map.rs");
    assert!(scan("src/seams/disk.rs", &text, STACK_RULES)
        .iter()
        .all(|p| p.rule != "hash-map"));
    assert!(scan("src/raft/core.rs", &text, STACK_RULES)
        .iter()
        .any(|p| p.rule == "hash-map"));
}
