//! lincheck: decides whether recorded client histories are linearizable.
//!
//! `cargo run --release --features sim --bin lincheck -- FILE…` reads each file —
//! Porcupine's key/value format or a Jepsen etcd log, detected from the content —
//! and prints one line per file: `<file>\t<linearizable|not-linearizable|timeout>\t<ms>`.
//! Exit code: 0 when every file was decided, 1 if any timed out, 2 on a bad file.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;

/// The harness's pure parts only (the rest needs the simulator and test crates).
#[allow(dead_code)]
#[path = "../../sim/pure.rs"]
mod sim;

use sim::checkers::linearizability::{check_kv, histories, models::CasRegister, wgl::linearizable};

#[derive(Parser)]
#[command(name = "lincheck", about = "Decide linearizability of history files")]
struct Args {
    /// Seconds allowed per file.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    files: Vec<PathBuf>,
}

/// Decides one history text: Ok(linearizable) or Err(parse error).
fn decide(text: &str) -> Result<bool, String> {
    if text.contains("jepsen.util") {
        let ops = histories::parse_etcd_log(text)?;
        Ok(linearizable(&CasRegister, &ops))
    } else if text.trim_start().starts_with('{') {
        let by_key = histories::parse_kv(text)?;
        Ok(check_kv(&by_key).is_ok())
    } else {
        Err("neither a key/value history ({:process …} lines) nor a Jepsen etcd log".into())
    }
}

fn main() {
    let args = Args::parse();
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
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(decide(&text));
        });
        let verdict = match rx.recv_timeout(Duration::from_secs(args.timeout_secs)) {
            Ok(Ok(true)) => "linearizable",
            Ok(Ok(false)) => "not-linearizable",
            Ok(Err(e)) => {
                eprintln!("lincheck: {}: {e}", file.display());
                status = 2;
                continue;
            }
            Err(_) => {
                status = status.max(1);
                "timeout"
            }
        };
        println!(
            "{}\t{verdict}\t{}",
            file.display(),
            started.elapsed().as_millis()
        );
    }
    std::process::exit(status);
}
