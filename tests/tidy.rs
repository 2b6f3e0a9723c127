//! Tidy: fails when the stack reaches around its seams for something that breaks
//! determinism in the simulator, and names the replacement (STYLE.md §9).

use std::path::{Path, PathBuf};

struct Rule {
    /// Substring that must not appear.
    pattern: &'static str,
    /// What to use instead.
    instead: &'static str,
    /// Files (relative paths) where the pattern is the seam itself.
    allowed_in: &'static [&'static str],
}

const STACK_RULES: &[Rule] = &[
    Rule {
        pattern: "thread_rng",
        instead: "madsim::rand (seeded by the simulation)",
        allowed_in: &[],
    },
    Rule {
        pattern: "rand::random",
        instead: "madsim::rand::random (seeded by the simulation)",
        allowed_in: &[],
    },
    Rule {
        pattern: "std::time::Instant",
        instead: "the Clock seam (seams::clock)",
        allowed_in: &[],
    },
    Rule {
        pattern: "SystemTime",
        instead: "the Clock seam (seams::clock)",
        allowed_in: &[],
    },
    Rule {
        pattern: "Instant::now",
        instead: "Clock::now_ms (the client library may time its own retries)",
        allowed_in: &[
            "src/seams/clock.rs",
            "src/client/mod.rs",
            "src/coordinator/lease.rs",
        ],
    },
    Rule {
        pattern: "std::fs",
        instead: "the Disk seam (seams::disk)",
        allowed_in: &["src/seams/disk.rs", "src/bin/coordd.rs"],
    },
    Rule {
        pattern: "tokio::fs",
        instead: "the Disk seam (madsim-tokio's fs is real tokio and panics in the simulator)",
        allowed_in: &[],
    },
    Rule {
        pattern: "thread::spawn",
        instead: "a tokio task (std threads escape the simulator)",
        allowed_in: &[],
    },
    Rule {
        pattern: "HashMap",
        instead: "BTreeMap: iteration order must be chosen, not random",
        allowed_in: &["src/seams/disk.rs", "src/client/mod.rs"],
    },
    Rule {
        pattern: "HashSet",
        instead: "BTreeSet: iteration order must be chosen, not random",
        allowed_in: &[],
    },
    Rule {
        pattern: "cfg(madsim)",
        instead: "a seam: simulation differences live in seams and the harness entry point",
        // balancer.rs: madsim's tonic balances over tower's `Change`, real tonic
        // over its own (the same API, two types).
        allowed_in: &[
            "src/bin/coordd.rs",
            "src/seams/mutants.rs",
            "src/coordinator/balancer.rs",
        ],
    },
    Rule {
        pattern: "select! {",
        instead: "select! with `biased;` (random branch order is entropy)",
        allowed_in: &[],
    },
];

/// Programs outside the stack and the simulator, exempt from the rules.
const OFFLINE_TOOLS: &[&str] = &["src/bin/lincheck.rs"];

const HARNESS_RULES: &[Rule] = &[
    Rule {
        pattern: "rand::thread_rng",
        instead: "madsim::rand::thread_rng (seeded)",
        allowed_in: &[],
    },
    Rule {
        pattern: "std::time::Instant",
        instead: "tokio::time::Instant (virtual time); wall time only where runs are timed",
        allowed_in: &["sim/runner.rs", "sim/sweep.rs", "sim/bench.rs"],
    },
    Rule {
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
        let lines: Vec<&str> = text.lines().collect();
        let mut in_tests = false;
        for (i, line) in lines.iter().enumerate() {
            // Unit tests below `#[cfg(test)]` may use whatever they need.
            if line.trim() == "#[cfg(test)]" {
                in_tests = true;
            }
            if in_tests || line.trim_start().starts_with("//") {
                continue;
            }
            for rule in rules {
                if rule.allowed_in.contains(&rel.as_str()) || !line.contains(rule.pattern) {
                    continue;
                }
                let next = lines.get(i + 1).map_or("", |l| l.trim());
                if rule.pattern == "select! {" && next == "biased;" {
                    continue;
                }
                if rule.pattern == "rand::random" && line.contains("madsim::rand::random") {
                    continue;
                }
                problems.push(format!(
                    "{rel}:{}: `{}` — use {}",
                    i + 1,
                    rule.pattern,
                    rule.instead
                ));
            }
        }
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

#[test]
fn the_rules_fire_on_a_bad_line() {
    let bad = "let t = std::time::Instant::now();";
    assert!(STACK_RULES.iter().any(|r| bad.contains(r.pattern)));
}
