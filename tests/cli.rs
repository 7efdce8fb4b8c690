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
