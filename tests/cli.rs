//! The `pmn` command line as a new user meets it: `--help` explains the commands and exits 0; an
//! unknown command or a missing argument exits 2 with the usage.

use std::process::Command;

fn pmn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pmn"))
        .args(args)
        .output()
        .expect("run pmn")
}

#[test]
fn help_lists_the_commands_and_exits_zero() {
    for flag in ["--help", "-h", "help"] {
        let out = pmn(&[flag]);
        assert!(out.status.success(), "{flag}: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "pmn demo",
            "pmn provider",
            "pmn source",
            "pairing code",
            "PMN_LOG",
            "--guest-server",
        ] {
            assert!(
                text.contains(needle),
                "{flag} does not mention {needle}:\n{text}"
            );
        }
    }
}

#[test]
fn a_wrong_command_line_exits_non_zero_with_the_usage() {
    let out = pmn(&["dance"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
    let out = pmn(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}

#[test]
fn command_help_shows_only_that_command_and_exits_zero() {
    for flag in ["--help", "-h"] {
        let out = pmn(&["provider", flag]);
        assert!(out.status.success(), "provider {flag}: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        for needle in [
            "pmn provider",
            "--pairing-every",
            "on Enter",
            "--server",
            "PMN_LOG",
        ] {
            assert!(text.contains(needle), "no {needle}:\n{text}");
        }
        assert!(
            !text.contains("pmn demo"),
            "another command's synopsis:\n{text}"
        );
        assert!(
            !text.contains("podcast"),
            "another command's paragraph:\n{text}"
        );
    }
    let out = pmn(&["source", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--refresh SECONDS"));
}

#[test]
fn a_bad_pairing_interval_exits_two() {
    let out = pmn(&[
        "provider",
        "--server",
        "127.0.0.1:1",
        "--pairing-every",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pairing-every takes seconds"));
}

/// `pmn provider` arms a new pairing code on Enter and on its `--pairing-every` timer, and keeps
/// serving (and timing) after its stdin closes.
#[test]
fn provider_prints_a_new_pairing_code_on_enter_and_on_its_timer() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let server = pmn_testkit::TestServer::shared();
    let state = tempfile::tempdir().expect("state dir");
    let device = format!("cli-tv-{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pmn"))
        .args(["provider", "--server", &server.addr(), "--ca"])
        .arg(server.ca_path())
        .args(["--network", pmn_testkit::HOME.jid, "--password"])
        .arg(pmn_testkit::HOME.password)
        .args(["--device", &device, "--name", "CLI pairing TV", "--state"])
        .arg(state.path())
        .args(["--pairing-every", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run pmn provider");
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The next pairing code printed within `within`, skipping other lines.
    let next_code = |within: Duration| -> Option<String> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = lines.recv_timeout(left).ok()?;
            if let Some(code) = line.strip_prefix("pairing code (5 minutes): ") {
                assert!(
                    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
                    "{line}"
                );
                return Some(code.to_string());
            }
        }
        None
    };
    let outcome = (|| {
        next_code(Duration::from_secs(20)).ok_or("no first code")?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let pressed = Instant::now();
        stdin.write_all(b"\n").map_err(|_| "stdin")?;
        next_code(Duration::from_secs(5)).ok_or("no code after Enter")?;
        // Asserted under 1 s below: the timer first fires 2 s after the first code, so a code
        // this soon is Enter's.
        let on_enter = pressed.elapsed();
        drop(stdin); // end of input: the provider goes on, the timer too
        next_code(Duration::from_secs(5)).ok_or("no code from the timer")?;
        next_code(Duration::from_secs(5)).ok_or("no second code from the timer")?;
        Ok::<_, &str>(on_enter)
    })();
    let alive = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    let on_enter = outcome.unwrap();
    assert!(alive, "the provider exited after its stdin closed");
    assert!(on_enter < Duration::from_secs(1), "Enter took {on_enter:?}");
}
