//! `cargo xtask fuzz` and the suite's fuzz smoke stage: cargo-fuzz on the nightly toolchain
//! (installed when missing), libFuzzer's statistics, the per-target report.

use std::env;
use std::process::Command;
use std::time::Instant;

use crate::ctx::{have, run, spawn_at_nice_19, Ctx, Failure, Result};

/// Seconds per target for `cargo xtask fuzz` when none are given.
pub(crate) const FUZZ_DEFAULT_SECONDS: u64 = 60;
/// Seconds per target in the suite's "fuzz smoke" stage (after the corpus replay).
pub(crate) const FUZZ_SMOKE_SECONDS: u64 = 4;

/// How long one target runs: for a time, or for a number of executions (`10M`, `500k`), which
/// is what a report of "executions per target" needs whatever else the machine is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Budget {
    Seconds(u64),
    Runs(u64),
}

impl Budget {
    /// `60` is seconds; `500k` and `10M` are executions.
    fn parse(text: &str) -> Option<Budget> {
        let (digits, scale) = if let Some(d) = text.strip_suffix(['M', 'm']) {
            (d, Some(1_000_000))
        } else if let Some(d) = text.strip_suffix(['k', 'K']) {
            (d, Some(1_000))
        } else {
            (text, None)
        };
        let n: u64 = digits.parse().ok()?;
        Some(match scale {
            Some(scale) => Budget::Runs(n.checked_mul(scale)?.max(1)),
            None => Budget::Seconds(n.max(1)),
        })
    }

    /// libFuzzer's flags for this budget.
    fn flags(self) -> Vec<String> {
        match self {
            Budget::Seconds(s) => vec![format!("-max_total_time={s}")],
            Budget::Runs(n) => vec![format!("-runs={n}")],
        }
    }
}

/// `cargo xtask fuzz [TARGET] [SECONDS | RUNS]`.
#[derive(Debug, PartialEq)]
pub(crate) struct FuzzArgs {
    pub(crate) target: Option<String>,
    pub(crate) budget: Budget,
}

impl FuzzArgs {
    /// `[]`, `[TARGET]`, `[BUDGET]`, `[TARGET, BUDGET]`; `all` is every target.
    pub(crate) fn parse(args: &[String]) -> Option<FuzzArgs> {
        let (target, budget) = match args {
            [] => (None, None),
            [one] => match Budget::parse(one) {
                Some(b) => (None, Some(b)),
                None => (Some(one.clone()), None),
            },
            [target, budget] => (Some(target.clone()), Some(Budget::parse(budget)?)),
            _ => return None,
        };
        Some(FuzzArgs {
            target: target.filter(|t| t != "all"),
            budget: budget.unwrap_or(Budget::Seconds(FUZZ_DEFAULT_SECONDS)),
        })
    }
}

/// The fuzz targets: the files of fuzz/fuzz_targets/, sorted.
pub(crate) fn fuzz_targets(ctx: &Ctx) -> Result<Vec<String>> {
    let dir = ctx.root.join("fuzz").join("fuzz_targets");
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| Failure::new("fuzz", format!("{}: {e}", dir.display())))?;
    let mut targets: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// A command run with the nightly toolchain (cargo-fuzz needs it for libFuzzer's sanitizer
/// coverage flags), cleared of what the stable `cargo xtask` run put in the environment.
pub(crate) fn nightly(ctx: &Ctx, program: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&ctx.root)
        .args(["run", "nightly", program])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO");
    cmd
}

/// Makes sure the nightly toolchain and cargo-fuzz are there, installing what is missing
/// (`rustup toolchain install nightly --profile minimal`, `cargo install cargo-fuzz`). An error
/// says what could not be installed.
pub(crate) fn fuzz_prerequisites(ctx: &Ctx) -> std::result::Result<(), String> {
    let has_nightly = |ctx: &Ctx| {
        nightly(ctx, "rustc")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_nightly(ctx) {
        println!("xtask: installing the nightly toolchain (cargo-fuzz needs it)");
        let installed = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !has_nightly(ctx) {
            return Err(
                "the nightly toolchain is missing and `rustup toolchain install \
                        nightly --profile minimal` failed"
                    .into(),
            );
        }
    }
    if !have("cargo-fuzz") {
        println!("xtask: installing cargo-fuzz");
        let installed = ctx
            .cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return Err("cargo-fuzz is missing and `cargo install cargo-fuzz` failed".into());
        }
    }
    Ok(())
}

/// `cargo fuzz` with the flags every run shares: release build with debug assertions and overflow
/// checks, AddressSanitizer (the default), and the fuzz crate's own target directory
/// (fuzz/target, also when `CARGO_TARGET_DIR` is set: its flags differ from the stable builds').
pub(crate) fn cargo_fuzz(ctx: &Ctx, subcommand: &str) -> Command {
    let mut cmd = nightly(ctx, "cargo");
    cmd.args(["fuzz", subcommand, "--debug-assertions", "--target-dir"])
        .arg(ctx.root.join("fuzz").join("target"));
    cmd
}

/// What libFuzzer reported at the end of one run.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct FuzzStats {
    execs: u64,
    pub(crate) seconds: f64,
    crashed: bool,
}

impl FuzzStats {
    /// Reads one line of libFuzzer's output (`-print_final_stats=1`).
    pub(crate) fn add_line(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.execs = n.trim().parse().unwrap_or(self.execs);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 123456 runs in 61 second(s)"
            let mut words = rest.split_whitespace();
            if let (Some(runs), Some("runs"), Some("in"), Some(secs)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                self.execs = runs.parse().unwrap_or(self.execs);
                self.seconds = secs.parse().unwrap_or(self.seconds);
            }
        } else if line.contains("ERROR: libFuzzer") || line.starts_with("SUMMARY: ") {
            self.crashed = true;
        }
    }
}

/// Runs `target` for `budget` on its corpus: the committed seeds (fuzz/corpus/TARGET, read only)
/// and what earlier local runs found (fuzz/corpus-local/TARGET, where new inputs go; not
/// committed). Echoes libFuzzer's output except the per-input coverage lines.
pub(crate) fn fuzz_run(ctx: &Ctx, target: &str, budget: Budget, quiet: bool) -> Result<FuzzStats> {
    use std::io::{BufRead, BufReader};
    let step = format!("fuzz {target}");
    let fuzz_dir = ctx.root.join("fuzz");
    let local = fuzz_dir.join("corpus-local").join(target);
    std::fs::create_dir_all(&local)
        .map_err(|e| Failure::new(&step, format!("{}: {e}", local.display())))?;
    let mut cmd = cargo_fuzz(ctx, "run");
    cmd.arg(target)
        .arg(&local)
        .arg(fuzz_dir.join("corpus").join(target))
        .arg("--")
        .args(budget.flags())
        .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048"])
        .stderr(std::process::Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::new(&step, format!("cannot run {cmd:?}: {e}")))?;
    let mut stats = FuzzStats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::io::Result::ok)
        {
            stats.add_line(&line);
            // "#1234\tNEW cov: …", "#1234\tREDUCE …", "#1234\tpulse …"
            let coverage_line = line.starts_with('#')
                && matches!(
                    line.split_whitespace().nth(1),
                    Some("NEW" | "REDUCE" | "pulse")
                );
            if !(coverage_line || quiet && line.starts_with("INFO: ")) {
                eprintln!("{line}");
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure::new(&step, format!("waiting for {cmd:?}: {e}")))?;
    if stats.seconds == 0.0 {
        stats.seconds = start.elapsed().as_secs_f64();
    }
    stats.crashed |= !status.success();
    Ok(stats)
}

/// Prints one line per target: executions, rate, time.
pub(crate) fn fuzz_report(results: &[(String, FuzzStats)]) {
    println!("\nxtask: fuzz results");
    for (target, s) in results {
        let rate = s.execs as f64 / s.seconds.max(1.0);
        println!(
            "  {target:<14} {:>12} execs  {:>9.0} execs/s  {:>5.0} s  {}",
            s.execs,
            rate,
            s.seconds,
            if s.crashed {
                "CRASH (see fuzz/artifacts/)"
            } else {
                "ok"
            }
        );
    }
}

/// `cargo xtask fuzz [TARGET] [SECONDS]`: builds the targets, then fuzzes one or all of them one
/// after the other.
pub(crate) fn fuzz(ctx: &mut Ctx, args: FuzzArgs) -> Result {
    let all = fuzz_targets(ctx)?;
    let targets = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => {
            return Err(Failure::new(
                "fuzz",
                format!("no fuzz target {t:?}; targets: {}", all.join(", ")),
            ))
        }
        None => all,
    };
    ctx.stage("fuzz prerequisites", |ctx| {
        fuzz_prerequisites(ctx).map_err(|e| Failure::new("fuzz prerequisites", e))
    })?;
    ctx.stage("fuzz build", |ctx| {
        let mut cmd = cargo_fuzz(ctx, "build");
        if let [one] = targets.as_slice() {
            cmd.arg(one);
        }
        run("fuzz build", &mut cmd)
    })?;
    let results = ctx.stage("fuzz", |ctx| {
        targets
            .iter()
            .map(|t| Ok((t.clone(), fuzz_run(ctx, t, args.budget, false)?)))
            .collect::<Result<Vec<_>>>()
    })?;
    fuzz_report(&results);
    let crashed: Vec<&str> = results
        .iter()
        .filter(|(_, s)| s.crashed)
        .map(|(t, _)| t.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            "fuzz",
            format!(
                "crash in {} (inputs in fuzz/artifacts/)",
                crashed.join(", ")
            ),
        ))
    }
}

/// Set to `0` to leave the fuzz smoke out of `cargo xtask test` (the corpus replay in `cargo test`
/// still runs every committed input).
pub(crate) const FUZZ_SMOKE_ENV: &str = "PMN_FUZZ_SMOKE";

/// The fuzz smoke's instrumented build (and the nightly toolchain and cargo-fuzz it needs),
/// started in the background at the lowest priority while the suite's tests run. Those tests
/// spend most of their time waiting on Prosody and ejabberd, so the 5 minutes of compiling fit
/// into their idle CPU instead of adding to the suite; at nice 19 the build yields the CPU
/// whenever a test wants it, so the tests' timing is not disturbed.
pub(crate) struct FuzzBuild {
    handle: Option<std::thread::JoinHandle<std::result::Result<(), FuzzBuildError>>>,
    log: std::path::PathBuf,
}

/// Why the background build did not give the smoke its binaries.
enum FuzzBuildError {
    /// The toolchain or cargo-fuzz is missing and could not be installed: the smoke is skipped.
    Prerequisites(String),
    /// The build ran and failed: the smoke fails.
    Build(String),
}

/// Starts [`FuzzBuild`] unless [`FUZZ_SMOKE_ENV`] is `0`. Its output goes to
/// `target/fuzz-build.log`, printed only when the build fails.
pub(crate) fn start_fuzz_build(ctx: &Ctx) -> FuzzBuild {
    let log = ctx.target_dir().join("fuzz-build.log");
    if env::var(FUZZ_SMOKE_ENV).as_deref() == Ok("0") {
        return FuzzBuild { handle: None, log };
    }
    let path = log.clone();
    // Everything it starts (rustup, cargo install, cargo fuzz, rustc) runs at 19.
    let handle = spawn_at_nice_19(move || {
        let ctx = Ctx::new();
        fuzz_prerequisites(&ctx).map_err(FuzzBuildError::Prerequisites)?;
        let out = std::fs::File::create(&path)
            .map_err(|e| FuzzBuildError::Build(format!("{}: {e}", path.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| FuzzBuildError::Build(e.to_string()))?;
        let mut cmd = cargo_fuzz(&ctx, "build");
        let status = cmd
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| FuzzBuildError::Build(format!("cannot run {cmd:?}: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(FuzzBuildError::Build(format!(
                "{cmd:?} exited with {status}"
            )))
        }
    });
    FuzzBuild {
        handle: Some(handle),
        log,
    }
}

/// The suite's stage: every target for [`FUZZ_SMOKE_SECONDS`] on top of its corpus, so a change
/// that makes a parser crash on known inputs, or on inputs a few seconds of fuzzing find, fails the
/// suite. Waits for the [`FuzzBuild`] started earlier. Skipped with a message when the nightly
/// toolchain or cargo-fuzz cannot be installed, or when [`FUZZ_SMOKE_ENV`] is `0`.
pub(crate) fn fuzz_smoke(ctx: &mut Ctx, build: FuzzBuild) -> Result {
    let Some(handle) = build.handle else {
        println!(
            "xtask: SKIPPING fuzz smoke ({FUZZ_SMOKE_ENV}=0); the fuzz corpus replay ran in cargo test"
        );
        return Ok(());
    };
    let waited = Instant::now();
    let built = handle
        .join()
        .map_err(|_| Failure::new("fuzz smoke", "the background build panicked"))?;
    println!(
        "xtask: the background fuzz build was ready after {:.0} s more",
        waited.elapsed().as_secs_f64()
    );
    match built {
        Ok(()) => {}
        Err(FuzzBuildError::Prerequisites(why)) => {
            println!("xtask: SKIPPING fuzz smoke: {why} (the corpus replay ran in cargo test)");
            return Ok(());
        }
        Err(FuzzBuildError::Build(why)) => {
            let log = std::fs::read_to_string(&build.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            return Err(Failure::new(
                "fuzz smoke",
                format!("{why} (whole log: {})", build.log.display()),
            ));
        }
    }
    let mut results = Vec::new();
    for target in fuzz_targets(ctx)? {
        let stats = fuzz_run(ctx, &target, Budget::Seconds(FUZZ_SMOKE_SECONDS), true)?;
        let crashed = stats.crashed;
        results.push((target.clone(), stats));
        if crashed {
            fuzz_report(&results);
            return Err(Failure::new(
                "fuzz smoke",
                format!("{target} crashed (input in fuzz/artifacts/{target}/)"),
            ));
        }
    }
    fuzz_report(&results);
    Ok(())
}

#[cfg(test)]
mod fuzz_tests {
    use super::{Budget, FuzzArgs, FuzzStats, FUZZ_DEFAULT_SECONDS};

    #[test]
    fn fuzz_arguments_and_libfuzzer_stats() {
        let args =
            |a: &[&str]| FuzzArgs::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let want = |t: Option<&str>, budget| {
            Some(FuzzArgs {
                target: t.map(str::to_owned),
                budget,
            })
        };
        let secs = Budget::Seconds;
        assert_eq!(args(&[]), want(None, secs(FUZZ_DEFAULT_SECONDS)));
        assert_eq!(args(&["30"]), want(None, secs(30)));
        assert_eq!(
            args(&["event"]),
            want(Some("event"), secs(FUZZ_DEFAULT_SECONDS))
        );
        assert_eq!(args(&["event", "5"]), want(Some("event"), secs(5)));
        assert_eq!(args(&["all", "5"]), want(None, secs(5)));
        assert_eq!(
            args(&["event", "10M"]),
            want(Some("event"), Budget::Runs(10_000_000))
        );
        assert_eq!(args(&["500k"]), want(None, Budget::Runs(500_000)));
        assert_eq!(args(&["event", "x"]), None);
        assert_eq!(Budget::Runs(7).flags(), ["-runs=7"]);

        let mut s = FuzzStats::default();
        for line in [
            "#1048576\tpulse  cov: 1234 ft: 5678 corp: 90/2Kb exec/s: 34952 rss: 80Mb",
            "Done 2097152 runs in 61 second(s)",
            "stat::number_of_executed_units: 2097153",
        ] {
            s.add_line(line);
        }
        assert_eq!((s.execs, s.seconds, s.crashed), (2_097_153, 61.0, false));
        s.add_line("==123== ERROR: libFuzzer: deadly signal");
        assert!(s.crashed);
    }
}
