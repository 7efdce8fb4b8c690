//! What every job shares: the [`Ctx`] (repository root, per-stage timings, test counts), the
//! [`Failure`] a step ends with, and running child processes (plain, or counting the tests a
//! runner reports).

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// A failed step: its name, what went wrong, and the exit code for xtask.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) step: String,
    pub(crate) detail: String,
    pub(crate) code: u8,
    /// The lines of the child's output that say why it failed (see [`Evidence`]), printed again
    /// after the stage times: CI shows only the end of a run's output.
    pub(crate) evidence: Vec<String>,
}

impl Failure {
    /// A failure of `step` with exit code 1 (a failed child's own code is set by [`check`]).
    pub(crate) fn new(step: &str, detail: impl fmt::Display) -> Failure {
        Failure {
            step: step.to_string(),
            detail: detail.to_string(),
            code: 1,
            evidence: Vec::new(),
        }
    }
}

/// The outcome of a step: its value or the [`Failure`] that stops xtask.
pub(crate) type Result<T = ()> = std::result::Result<T, Failure>;

/// One stage's name, time and outcome, and the free disk space after it.
pub(crate) struct StageTime {
    name: String,
    time: Duration,
    ok: bool,
    /// Free MiB on the target directory's file system, then on the temporary directory's.
    free: Option<(u64, u64)>,
    /// How the machine's CPU time went during the stage (Linux only).
    cpu: Option<CpuShare>,
}

/// The machine's CPU time since boot, from the first line of /proc/stat, in clock ticks: time
/// spent at normal priority, at a raised nice value (the suite's background builds), and idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTicks {
    busy: u64,
    niced: u64,
    idle: u64,
}

impl CpuTicks {
    /// Reads /proc/stat; `None` where there is none.
    fn now() -> Option<CpuTicks> {
        CpuTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses /proc/stat's aggregate line: `cpu user nice system idle iowait irq softirq steal …`.
    fn parse(stat: &str) -> Option<CpuTicks> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let at = |i: usize| n.get(i).copied().unwrap_or(0);
        Some(CpuTicks {
            busy: at(0) + at(2) + at(5) + at(6) + at(7),
            niced: at(1),
            idle: at(3) + at(4),
        })
    }

    /// The shares of the time between `self` and `later`.
    fn share_until(self, later: CpuTicks) -> Option<CpuShare> {
        let busy = later.busy.checked_sub(self.busy)?;
        let niced = later.niced.checked_sub(self.niced)?;
        let idle = later.idle.checked_sub(self.idle)?;
        let total = (busy + niced + idle).max(1) as f64;
        Some(CpuShare {
            busy: busy as f64 / total,
            niced: niced as f64 / total,
            idle: idle as f64 / total,
        })
    }
}

/// Fractions of all cores' time during one stage: at normal priority (the stage itself, and
/// servers), niced (the background builds started at nice 19), idle. Idle time in a stage is
/// room for the background builds; niced time is what they got.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuShare {
    busy: f64,
    niced: f64,
    idle: f64,
}

/// Repository paths and the per-stage timings.
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
    pub(crate) timings: Vec<StageTime>,
    /// Tests counted from the runners' own summaries (cargo test, Surefire).
    pub(crate) counts: TestCounts,
}

impl Ctx {
    /// The context of one xtask run: the repository root (the parent of xtask/), no stages yet.
    pub(crate) fn new() -> Ctx {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives inside the repository")
            .to_path_buf();
        Ctx {
            root,
            timings: Vec::new(),
            counts: TestCounts::default(),
        }
    }

    /// Runs one stage with a banner, recording its time and outcome.
    pub(crate) fn stage<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Ctx) -> Result<T>,
    ) -> Result<T> {
        println!("\n==== xtask: {name} ====");
        let start = Instant::now();
        let ticks = CpuTicks::now();
        let result = f(self);
        let free = self.disk_free();
        let cpu = ticks
            .zip(CpuTicks::now())
            .and_then(|(before, after)| before.share_until(after));
        self.timings.push(StageTime {
            name: name.to_string(),
            time: start.elapsed(),
            ok: result.is_ok(),
            free,
            cpu,
        });
        result
    }

    /// Prints the stage times and, when a runner reported any, the test counts.
    pub(crate) fn summary(&self) {
        if self.timings.is_empty() {
            return;
        }
        println!(
            "\n==== xtask: stage times (CPU during it: busy / nice 19 / idle; free disk after: \
             target, temp dir) ===="
        );
        for StageTime {
            name,
            time,
            ok,
            free,
            cpu,
        } in &self.timings
        {
            let mark = if *ok { "ok    " } else { "FAILED" };
            let cpu = cpu.map_or_else(
                || " ".repeat("  (100 / 100 / 100 %)".len()),
                |c| {
                    format!(
                        "  ({:>3.0} / {:>3.0} / {:>3.0} %)",
                        c.busy * 100.0,
                        c.niced * 100.0,
                        c.idle * 100.0
                    )
                },
            );
            let free = free.map_or_else(String::new, |(target, tmp)| {
                format!("  [{:.1} / {:.1} GiB free]", gib(target), gib(tmp))
            });
            println!("  {mark} {:>8.1}s{cpu}  {name}{free}", time.as_secs_f64());
        }
        let total: Duration = self.timings.iter().map(|stage| stage.time).sum();
        println!("         {:>8.1}s  total", total.as_secs_f64());
        if self.counts != TestCounts::default() {
            // The plain closing line CI reads: every Rust and JVM test counted above.
            println!(
                "tests: {} passed, {} failed",
                self.counts.passed, self.counts.failed
            );
        }
    }

    /// Free MiB on the file systems of the target directory (or the repository, before the
    /// first build) and of the temporary directory, where rustdoc links and runs doctests.
    /// A full disk fails a build or a doctest's link with an error far from its cause.
    pub(crate) fn disk_free(&self) -> Option<(u64, u64)> {
        let target = self.target_dir();
        let target = if target.exists() {
            target
        } else {
            self.root.clone()
        };
        Some((free_mib(&target)?, free_mib(&env::temp_dir())?))
    }

    /// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the repository) or `target/`.
    pub(crate) fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// `cargo` (the one running us when available), working in the repository root.
    pub(crate) fn cargo(&self) -> Command {
        let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
        cmd.current_dir(&self.root);
        cmd
    }
}

/// Runs `cmd` with inherited stdio; a non-zero exit fails `step`.
pub(crate) fn run(step: &str, cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| Failure::new(step, format!("cannot run {cmd:?}: {e}")))?;
    check(step, cmd, status)
}

/// MiB available to an unprivileged user on the file system holding `path`.
fn free_mib(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) writes only into the zeroed struct it is given; the path is a valid
    // NUL-terminated string that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    // Both are u64 on the 64-bit Linux hosts xtask runs on.
    let bytes = stat.f_bavail.saturating_mul(stat.f_frsize);
    Some(bytes / (1024 * 1024))
}

/// MiB as GiB, for printing.
pub(crate) fn gib(mib: u64) -> f64 {
    mib as f64 / 1024.0
}

/// Passed and failed tests, added up from the runners' summary lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestCounts {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
}

impl TestCounts {
    /// Adds what one output line of `cargo test` or Maven Surefire reports.
    pub(crate) fn add_line(&mut self, line: &str) {
        // cargo: "test result: ok. 9 passed; 0 failed; 0 ignored; ..."
        if let Some(rest) = line.trim().strip_prefix("test result: ") {
            self.passed += number_before(rest, " passed");
            self.failed += number_before(rest, " failed");
            return;
        }
        // Surefire's aggregate (the per-class lines end in "-- in <class>" and are skipped):
        // "[INFO] Tests run: 22, Failures: 0, Errors: 0, Skipped: 0"
        let line = line
            .trim_start_matches("[INFO] ")
            .trim_start_matches("[ERROR] ");
        if let Some(rest) = line.strip_prefix("Tests run: ") {
            if rest.contains(" -- in ") {
                return;
            }
            let run = number_after(rest, "");
            let failures = number_after(rest, "Failures: ");
            let errors = number_after(rest, "Errors: ");
            let skipped = number_after(rest, "Skipped: ");
            self.failed += failures + errors;
            self.passed += run.saturating_sub(failures + errors + skipped);
        }
    }
}

/// The number ending right before `marker` in `text` ("9 passed" → 9).
pub(crate) fn number_before(text: &str, marker: &str) -> u64 {
    text.find(marker)
        .map(|end| {
            let digits: String = text[..end]
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits
                .chars()
                .rev()
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The number right after `marker` in `text` ("Errors: 2," → 2).
pub(crate) fn number_after(text: &str, marker: &str) -> u64 {
    text.find(marker)
        .map(|start| {
            text[start + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The lines of a test runner's output that say why it failed, kept while the output streams
/// by: the first lines of each failed test's captured output (cargo's `---- name stdout ----`
/// blocks), and error lines (`error:`, `error[E…]`, Surefire's `[ERROR]`, a full disk, a killed
/// process). Bounded, so a flood of failures still leaves a short digest.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    lines: Vec<String>,
    /// Whether a failure block is being read, and how many more of its lines may be kept.
    block_left: Option<usize>,
    /// Lines still to keep of a panic message (it may span lines).
    panic_left: usize,
    blocks: usize,
}

impl Evidence {
    /// The most lines kept in all.
    const MAX_LINES: usize = 30;
    /// The most failure blocks kept, and lines of each.
    const MAX_BLOCKS: usize = 4;
    const BLOCK_LINES: usize = 6;
    /// The lines of a panic message kept after its `panicked at` line.
    const PANIC_LINES: usize = 3;

    /// Looks at one line of the runner's output.
    pub(crate) fn add_line(&mut self, line: &str) {
        if self.lines.len() >= Self::MAX_LINES {
            return;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("---- ") && trimmed.ends_with(" ----") {
            self.panic_left = 0;
            self.block_left = None;
            if self.blocks < Self::MAX_BLOCKS {
                self.blocks += 1;
                self.block_left = Some(Self::BLOCK_LINES);
                self.lines.push(trimmed.to_string());
            }
            return;
        }
        if trimmed == "failures:" || trimmed.starts_with("test result: ") {
            self.block_left = None;
            self.panic_left = 0;
            return;
        }
        let Some(left) = self.block_left else {
            if is_error_line(trimmed) && !self.lines.iter().any(|l| l == trimmed) {
                self.lines.push(trimmed.to_string());
            }
            return;
        };
        // A test's own log lines and its backtrace say where, not why: inside a block only the
        // panic message and error lines are kept.
        let keep = if trimmed.contains("panicked at") {
            self.panic_left = Self::PANIC_LINES;
            true
        } else if trimmed.starts_with("stack backtrace:") || trimmed.starts_with("note: run with") {
            self.panic_left = 0;
            false
        } else if self.panic_left > 0 && !trimmed.is_empty() {
            self.panic_left -= 1;
            true
        } else {
            is_error_line(trimmed)
        };
        if keep && left > 0 {
            self.block_left = Some(left - 1);
            self.lines.push(format!("  {trimmed}"));
        }
    }

    /// The lines kept, in the order they came.
    pub(crate) fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

/// Whether a line reports an error by itself (not one of a test's own log lines).
fn is_error_line(line: &str) -> bool {
    const MARKS: [&str; 6] = [
        "No space left on device",
        "Permission denied",
        "Cannot allocate memory",
        "SIGKILL",
        "signal: 9",
        "could not compile",
    ];
    line.starts_with("error:")
        || line.starts_with("error[")
        || line.starts_with("[ERROR]")
        || line.starts_with("Couldn't compile")
        || line.starts_with("Couldn't run")
        || MARKS.iter().any(|mark| line.contains(mark))
}

/// Calls `f` with each line of `pipe` until it closes. A line that is not UTF-8 is passed
/// lossily rather than ending the loop: a pipe no longer read would fill and block the child.
fn for_each_line(pipe: impl std::io::Read, mut f: impl FnMut(&str)) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                f(line.trim_end_matches(['\n', '\r']));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Like [`run`], but echoes stdout and stderr line by line while counting the tests the runner
/// reports and keeping the [`Evidence`] of a failure, which a failed step carries.
pub(crate) fn run_counting(step: &str, cmd: &mut Command, counts: &mut TestCounts) -> Result {
    counting(step, cmd, counts, true)
}

/// [`run_counting`], echoing the child's output only if `echo` (the tests of this file do not:
/// a fake runner's summary on the real stdout would be counted by the suite's own runner).
fn counting(step: &str, cmd: &mut Command, counts: &mut TestCounts, echo: bool) -> Result {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(step, format!("cannot run {cmd:?}: {e}")))?;
    let evidence = Arc::new(Mutex::new(Evidence::default()));
    // stderr on its own thread, so neither pipe fills while the other is read.
    let stderr_echo = child.stderr.take().map(|stderr| {
        let evidence = Arc::clone(&evidence);
        std::thread::spawn(move || {
            for_each_line(stderr, |line| {
                if let Ok(mut evidence) = evidence.lock() {
                    evidence.add_line(line);
                }
                if echo {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            })
        })
    });
    if let Some(stdout) = child.stdout.take() {
        for_each_line(stdout, |line| {
            counts.add_line(line);
            if let Ok(mut evidence) = evidence.lock() {
                evidence.add_line(line);
            }
            if echo {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
        });
    }
    let status = child
        .wait()
        .map_err(|e| Failure::new(step, format!("waiting for {cmd:?}: {e}")))?;
    if let Some(echo) = stderr_echo {
        let _ = echo.join();
    }
    check(step, cmd, status).map_err(|mut failure| {
        if let Ok(mut evidence) = evidence.lock() {
            failure.evidence = std::mem::take(&mut *evidence).into_lines();
        }
        failure
    })
}

/// `Ok` for a successful `status`, else a failure of `step` carrying the child's exit code.
pub(crate) fn check(step: &str, cmd: &Command, status: ExitStatus) -> Result {
    if status.success() {
        return Ok(());
    }
    let mut failure = Failure::new(step, format!("{cmd:?} exited with {status}"));
    failure.code = exit_code(status);
    Err(failure)
}

/// The exit code to report for a child's status (128 + signal for a killed child).
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

/// Whether `program` is on `PATH`.
pub(crate) fn have(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// Runs `work` on a new thread at nice 19, with everything it starts: Linux keeps the nice value
/// per thread and a child inherits its forking thread's. For the suite's background builds,
/// which should take only the time the foreground leaves idle.
pub(crate) fn spawn_at_nice_19<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        // SAFETY: setpriority only changes the scheduling priority of the calling thread.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
        work()
    })
}

#[cfg(test)]
mod cpu_tests {
    use super::CpuTicks;

    #[test]
    fn proc_stat_shares() {
        let before = "cpu  100 50 20 800 30 1 2 3 0 0\ncpu0 50 25 10 400 15 0 1 1 0 0\n";
        let after = "cpu  160 110 40 860 30 1 2 3 0 0\n";
        let (a, b) = (CpuTicks::parse(before), CpuTicks::parse(after));
        assert_eq!(
            a,
            Some(CpuTicks {
                busy: 126,
                niced: 50,
                idle: 830
            })
        );
        let share = a.zip(b).and_then(|(a, b)| a.share_until(b)).map(|s| {
            (
                (s.busy * 100.0).round(),
                (s.niced * 100.0).round(),
                (s.idle * 100.0).round(),
            )
        });
        // 80 busy, 60 niced, 60 idle ticks.
        assert_eq!(share, Some((40.0, 30.0, 30.0)));
        assert_eq!(CpuTicks::parse("intr 1 2 3\n"), None);
        // A counter that went backwards (another boot's reading) gives no share.
        assert_eq!(b.zip(a).and_then(|(b, a)| b.share_until(a)), None);
    }
}

#[cfg(test)]
mod counting_tests {
    use super::{Evidence, TestCounts};

    #[test]
    fn evidence_keeps_the_panic_messages_and_error_lines_but_not_backtraces_or_logs() {
        let mut e = Evidence::default();
        for line in [
            "test a ... FAILED",
            "2026-12-02T03:00:00Z  INFO pmn: error reply sent to a stranger",
            "---- src/core/rpc/xmlrpc.rs - Value (line 67) stdout ----",
            "error: linking with `cc` failed: exit status: 1",
            "  = note: /usr/bin/ld: final link failed: No space left on device",
            "",
            "---- calls::a stdout ----",
            "tunnel call during a freeze: failed after 3.4s",
            "2026-12-02T03:00:01Z DEBUG pmn::core::session: reconnecting",
            "thread 'a' panicked at tests/calls.rs:9:5:",
            "the cut-off call ran once (2 runs)",
            "stack backtrace:",
            "   0: __rustc::rust_begin_unwind",
            "failures:",
            "error: test failed, to rerun pass `--test calls`",
        ] {
            e.add_line(line);
        }
        assert_eq!(
            e.into_lines(),
            [
                "---- src/core/rpc/xmlrpc.rs - Value (line 67) stdout ----",
                "  error: linking with `cc` failed: exit status: 1",
                "  = note: /usr/bin/ld: final link failed: No space left on device",
                "---- calls::a stdout ----",
                "  thread 'a' panicked at tests/calls.rs:9:5:",
                "  the cut-off call ran once (2 runs)",
                "error: test failed, to rerun pass `--test calls`",
            ]
        );
    }

    #[test]
    fn a_failed_runner_carries_its_evidence_from_both_pipes_and_its_exit_code() {
        let mut counts = TestCounts::default();
        // The pause orders the two pipes' lines, which are read on two threads.
        let script = "echo '---- t stdout ----'; echo \"thread 't' panicked at x.rs:1:1:\"; \
                      echo 'two runs, not one'; \
                      echo 'test result: FAILED. 1 passed; 1 failed; 0 ignored'; \
                      sleep 0.3; echo 'error: test failed' >&2; exit 3";
        let failure = super::counting(
            "runner",
            std::process::Command::new("sh").args(["-c", script]),
            &mut counts,
            false,
        )
        .expect_err("exit 3 fails the step");
        assert_eq!(failure.code, 3);
        assert_eq!(
            counts,
            TestCounts {
                passed: 1,
                failed: 1
            }
        );
        assert_eq!(
            failure.evidence,
            [
                "---- t stdout ----",
                "  thread 't' panicked at x.rs:1:1:",
                "  two runs, not one",
                "error: test failed",
            ]
        );
    }

    #[test]
    fn a_line_that_is_not_utf8_does_not_stop_the_reading() {
        let mut counts = TestCounts::default();
        let script = "printf 'before\\n\\377\\376 bytes\\n'; \
                      echo 'test result: ok. 2 passed; 0 failed; 0 ignored'";
        super::counting(
            "runner",
            std::process::Command::new("sh").args(["-c", script]),
            &mut counts,
            false,
        )
        .expect("exit 0");
        assert_eq!(
            counts,
            TestCounts {
                passed: 2,
                failed: 0
            }
        );
    }

    #[test]
    fn evidence_is_bounded_however_many_tests_fail() {
        let mut e = Evidence::default();
        for i in 0..1000 {
            e.add_line(&format!("---- t{i} stdout ----"));
            e.add_line(&format!("thread 't{i}' panicked"));
            e.add_line(&format!("error: number {i}"));
        }
        let lines = e.into_lines();
        assert!(lines.len() <= Evidence::MAX_LINES, "{}", lines.len());
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("---- ")).count(),
            Evidence::MAX_BLOCKS
        );
    }

    #[test]
    fn counts_cargo_and_surefire_summaries_but_not_per_class_lines() {
        let mut c = TestCounts::default();
        for line in [
            "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.16s",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "[INFO] Tests run: 5, Failures: 0, Errors: 0, Skipped: 0, Time elapsed: 0.3 s -- in org.pmn.X",
            "[INFO] Tests run: 22, Failures: 1, Errors: 1, Skipped: 2",
            "running 9 tests",
        ] {
            c.add_line(line);
        }
        assert_eq!(
            c,
            TestCounts {
                passed: 9 + 3 + 18,
                failed: 2 + 2
            }
        );
    }
}
