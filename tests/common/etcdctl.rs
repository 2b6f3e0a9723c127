//! Driving the real `etcdctl` (etcd v3 API, version 3.4 as Debian ships it) from tests:
//! one-shot commands with a hard time limit, and long-running ones (`watch`,
//! `lease keep-alive`, `lock`) whose output is collected while they run.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How to get `etcdctl`; printed whenever it is missing.
pub const INSTALL_HINT: &str = "etcdctl not found on PATH: install Debian's etcd v3.4 client with \
     `apt-get install etcd-client` (.ci/run does this), or point ETCDCTL_BIN at an etcdctl binary";

/// No etcdctl call in a test may take longer than this, whatever it waits for.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// Finds `etcdctl`: `$ETCDCTL_BIN`, else the first one on `PATH`.
pub fn find_etcdctl() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("ETCDCTL_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "ETCDCTL_BIN={} is not a file", bin.display());
        return Some(bin);
    }
    super::find_on_path("etcdctl")
}

/// `etcdctl`'s path; panics with [`INSTALL_HINT`] when it is missing.
pub fn etcdctl_path() -> PathBuf {
    find_etcdctl().unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// Whether a test that needs etcdctl may run: false (after one skip line) when
/// it is missing on a machine that does not require it, see
/// [`super::may_skip_missing`].
pub fn etcdctl_or_skip() -> bool {
    find_etcdctl().is_some() || super::skip_missing("etcdctl", "apt-get install etcd-client")
}

/// What one etcdctl run printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// etcdctl's own error line (`Error: …`), without the client library's JSON
    /// log lines that precede it.
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|line| line.starts_with("Error:"))
            .unwrap_or("")
    }

    /// stdout, asserting the command succeeded.
    pub fn ok(self) -> String {
        assert!(self.status.success(), "etcdctl failed: {self}");
        self.stdout
    }

    /// Asserts the command failed and its error line contains `message`.
    pub fn fails_with(self, message: &str) -> Outcome {
        assert!(!self.status.success(), "etcdctl should fail: {self}");
        assert!(
            self.error_line().contains(message),
            "expected an error containing {message:?}: {self}"
        );
        self
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`etcdctl {}` exited with {}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

/// An etcdctl invocation prefix: binary, endpoints, credentials, timeouts.
#[derive(Clone, Debug)]
pub struct Etcdctl {
    bin: PathBuf,
    global_args: Vec<String>,
}

impl Etcdctl {
    /// etcdctl talking to `endpoints` (all of them, as one client: etcdctl
    /// balances over them and skips dead ones).
    pub fn new(endpoints: &[String]) -> Etcdctl {
        Etcdctl {
            bin: etcdctl_path(),
            global_args: vec![
                format!("--endpoints={}", endpoints.join(",")),
                "--dial-timeout=2s".to_string(),
            ],
        }
    }

    /// The same with `--user name:password`.
    pub fn as_user(&self, user_and_password: &str) -> Etcdctl {
        self.with_global(&format!("--user={user_and_password}"))
    }

    /// The same with one more global flag (e.g. `--command-timeout=2s`).
    pub fn with_global(&self, flag: &str) -> Etcdctl {
        let mut next = self.clone();
        next.global_args.push(flag.to_string());
        next
    }

    /// `etcdctl version`'s first line, e.g. `etcdctl version: 3.4.23`.
    pub fn version(&self) -> String {
        let out = self
            .command(&["version"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", self.bin.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().next().unwrap_or_default().to_string()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        // Only flags decide what etcdctl does: no ETCDCTL_* from the caller's shell.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCDCTL_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("ETCDCTL_API", "3")
            .args(&self.global_args)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs one command to completion.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_with_stdin(args, "")
    }

    /// Runs one command with `input` on stdin (e.g. `txn`, `user add --interactive=false`).
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Outcome {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", self.bin.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let status = wait_with_limit(&mut child, COMMAND_LIMIT).unwrap_or_else(|| {
            panic!(
                "`etcdctl {}` still running after {COMMAND_LIMIT:?}",
                args.join(" ")
            )
        });
        Outcome {
            args: args.iter().map(|a| a.to_string()).collect(),
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }

    /// Runs `args`, asserting success, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args).ok()
    }

    /// Starts a long-running command; its stdout is collected as it arrives.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let mut child = self
            .command(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", self.bin.display()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let reader = {
            let stdout = stdout.clone();
            let mut pipe = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    stdout
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            })
        };
        let stderr = drain(child.stderr.take().unwrap());
        Background {
            args: args.join(" "),
            child,
            stdout,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running etcdctl (watch, keep-alive, lock). Killed when dropped.
pub struct Background {
    args: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

impl Background {
    /// Everything printed to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Polls stdout until `done` holds, failing after `within` with what was printed.
    pub fn wait_for_stdout(&mut self, what: &str, within: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if done(&self.stdout()) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Exited: one last look, since the reader may still have been behind.
                self.join_reader();
                if !done(&self.stdout()) {
                    let stderr = self.take_stderr();
                    panic!(
                        "`etcdctl {}` exited ({status}) before {what}\n--- stdout\n{}--- stderr\n{stderr}",
                        self.args,
                        self.stdout(),
                    );
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`etcdctl {}`: not within {within:?}: {what}\n--- stdout\n{}",
                self.args,
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself; stdout is complete afterwards.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = wait_with_limit(&mut self.child, within).unwrap_or_else(|| {
            panic!(
                "`etcdctl {}` did not exit within {within:?}\n--- stdout\n{}",
                self.args,
                self.stdout()
            )
        });
        self.join_reader();
        status
    }

    /// SIGKILL: etcdctl gets no chance to clean up (e.g. revoke a lease).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_reader();
    }

    pub fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
