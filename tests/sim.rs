//! The simulation suite: `cargo test --features sim` (or `cargo sim`).
//!
//! A cargo feature cannot turn on `--cfg madsim` for dependencies, so in a normal
//! build this file's `main` re-runs the same test under `--cfg madsim` (in its own
//! target directory) and forwards the exit code: the plain command always runs the
//! real simulation, never silently a non-simulated build. The simulation build uses
//! the optimised `sim` profile (Cargo.toml); `ci/sim-cargo.sh` builds it the same
//! way for the scripts. Under `--cfg madsim` the file is the scenario runner in
//! `sim/runner.rs`.

// cfg(test) is on in this harness-less target, but the unit tests inside `sim/`
// run through tests/harness.rs; here their imports are unused.
#[cfg(madsim)]
#[allow(unused_imports, dead_code)]
#[path = "../sim/mod.rs"]
mod sim;

// glibc's malloc was ~12% of a reference seed's profile (perf, ci/bench-sim.sh).
#[cfg(madsim)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(madsim)]
fn main() {
    sim::runner::main();
}

#[cfg(not(madsim))]
fn main() {
    use std::process::Command;

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = env!("CARGO_MANIFEST_DIR");
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.split_whitespace().any(|f| f == "--cfg=madsim")
        && !rustflags.contains("--cfg madsim")
    {
        rustflags.push_str(" --cfg madsim");
    }
    let target_dir =
        std::env::var("SIM_TARGET_DIR").unwrap_or_else(|_| format!("{root}/target/sim"));
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "test",
            "--profile",
            "sim",
            "--features",
            "sim",
            "--test",
            "sim",
            "--",
        ])
        .args(std::env::args().skip(1))
        .env("RUSTFLAGS", rustflags.trim())
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap_or_else(|e| {
            eprintln!("error: could not run cargo for the simulation build: {e}");
            std::process::exit(2);
        });
    std::process::exit(status.code().unwrap_or(1));
}
