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
}

impl Failure {
    /// A failure of `step` with exit code 1 (a failed child's own code is set by [`check`]).
    pub(crate) fn new(step: &str, detail: impl fmt::Display) -> Failure {
        Failure {
            step: step.to_string(),
            detail: detail.to_string(),
            code: 1,
        }
    }
}

/// The outcome of a step: its value or the [`Failure`] that stops xtask.
pub(crate) type Result<T = ()> = std::result::Result<T, Failure>;

/// Repository paths and the per-stage timings.
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
    pub(crate) timings: Vec<(String, Duration, bool)>,
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
        let result = f(self);
        self.timings
            .push((name.to_string(), start.elapsed(), result.is_ok()));
        result
    }

    /// Prints the stage times and, when a runner reported any, the test counts.
    pub(crate) fn summary(&self) {
        if self.timings.is_empty() {
            return;
        }
        println!("\n==== xtask: stage times ====");
        for (name, time, ok) in &self.timings {
            let mark = if *ok { "ok    " } else { "FAILED" };
            println!("  {mark} {:>8.1}s  {name}", time.as_secs_f64());
        }
        let total: Duration = self.timings.iter().map(|(_, t, _)| *t).sum();
        println!("         {:>8.1}s  total", total.as_secs_f64());
        if self.counts != TestCounts::default() {
            // The plain closing line CI reads: every Rust and JVM test counted above.
            println!(
                "tests: {} passed, {} failed",
                self.counts.passed, self.counts.failed
            );
        }
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

/// Like [`run`], but echoes stdout line by line while counting the tests it reports.
pub(crate) fn run_counting(step: &str, cmd: &mut Command, counts: &mut TestCounts) -> Result {
    use std::io::{BufRead, BufReader, Write};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(step, format!("cannot run {cmd:?}: {e}")))?;
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            counts.add_line(&line);
            let _ = writeln!(out, "{line}");
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure::new(step, format!("waiting for {cmd:?}: {e}")))?;
    check(step, cmd, status)
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

#[cfg(test)]
mod counting_tests {
    use super::TestCounts;

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
