//! lincheck: decides whether recorded client histories are linearizable.
//!
//! `cargo run --release --features sim --bin lincheck -- FILE…` reads each file —
//! Porcupine's key/value format or a Jepsen etcd log, detected from the content —
//! and prints one line per file: `<file>\t<linearizable|not-linearizable|timeout>\t<ms>`
//! (milliseconds to parse and decide, two decimals).
//! Exit code: 0 when every file was decided, 1 if any timed out, 2 on a bad file.
//! Each file's partitions (keys) are decided on worker threads; the first key that
//! is not linearizable ends the file's check.
//!
//! `lincheck --generate kv|etcd --clients N --ops N [--fault stale-read|lost-write]
//! [--seed S]` prints a generated history of known verdict instead (for benchmarks,
//! see `ci/bench-lincheck.sh`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

/// The harness's pure parts only (the rest needs the simulator and test crates).
#[allow(dead_code)]
#[path = "../../sim/pure.rs"]
mod sim;

use sim::checkers::linearizability::{files, generate};

#[derive(Parser)]
#[command(name = "lincheck", about = "Decide linearizability of history files")]
struct Args {
    /// Seconds allowed per file.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Worker threads per file (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Instead of checking files, print a generated history: `kv` (Porcupine's
    /// key/value lines) or `etcd` (a Jepsen etcd log).
    #[arg(long, value_name = "SHAPE")]
    generate: Option<String>,
    /// Generated history: concurrent clients.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Generated history: operations.
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Generated history: `none`, `stale-read` or `lost-write` (kv only).
    #[arg(long, default_value = "none")]
    fault: String,
    /// Generated history: seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    files: Vec<PathBuf>,
}

/// `--generate`: prints the history the arguments ask for.
fn generate(args: &Args, shape: &str) -> Result<(), String> {
    use generate::{Fault, Shape};
    let shape = match shape {
        "kv" => Shape::Kv,
        "etcd" => Shape::Etcd,
        other => return Err(format!("--generate {other}: expected kv or etcd")),
    };
    let fault = match args.fault.as_str() {
        "none" => Fault::None,
        "stale-read" => Fault::StaleRead,
        "lost-write" if shape == Shape::Kv => Fault::LostWrite,
        other => {
            return Err(format!(
                "--fault {other}: expected none, stale-read or (kv) lost-write"
            ))
        }
    };
    print!(
        "{}",
        generate::history(shape, args.clients, args.ops, fault, args.seed)
    );
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Some(shape) = &args.generate {
        if let Err(e) = generate(&args, shape) {
            eprintln!("lincheck: {e}");
            std::process::exit(2);
        }
        return;
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut status = 0;
    for file in &args.files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("lincheck: {}: {e}", file.display());
                status = 2;
                continue;
            }
        };
        let started = Instant::now();
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel();
        let decided = std::thread::scope(|scope| {
            scope.spawn(|| {
                let _ = tx.send(files::decide_parallel(&text, threads, &stop));
            });
            let decided = rx.recv_timeout(Duration::from_secs(args.timeout_secs));
            // Ends the workers' searches on a timeout; harmless once they are done.
            stop.store(true, Ordering::Relaxed);
            decided
        });
        let verdict = match decided {
            Ok(Ok(Some(true))) => "linearizable",
            Ok(Ok(Some(false))) => "not-linearizable",
            Ok(Err(e)) => {
                eprintln!("lincheck: {}: {e}", file.display());
                status = 2;
                continue;
            }
            Ok(Ok(None)) | Err(_) => {
                status = status.max(1);
                "timeout"
            }
        };
        println!(
            "{}\t{verdict}\t{:.2}",
            file.display(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    std::process::exit(status);
}
