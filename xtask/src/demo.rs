//! `cargo xtask demo`: a local Prosody and `pmn demo` against it.

use std::process::Command;

use crate::ctx::{run, Ctx, Result};
use crate::install::{install_prosody, start_prosody};

/// `cargo xtask demo`: builds `pmn`, starts a Prosody, runs `pmn demo` against it.
pub(crate) fn demo(ctx: &mut Ctx) -> Result {
    ctx.stage("prerequisites", install_prosody)?;
    ctx.stage("build pmn", |ctx| {
        run(
            "build pmn",
            ctx.cargo().args([
                "build",
                "-p",
                "pmn",
                "--features",
                "test-ca,sources",
                "--bin",
                "pmn",
            ]),
        )
    })?;
    let server = ctx.stage("prosody", start_prosody)?;
    let result = ctx.stage("demo", |ctx| {
        let bin = ctx.target_dir().join("debug").join("pmn");
        let mut cmd = Command::new(&bin);
        cmd.current_dir(&ctx.root)
            .arg("demo")
            .arg("--server")
            .arg(server.addr())
            .arg("--ca")
            .arg(server.ca_path());
        run("demo", &mut cmd)
    });
    drop(server); // stops Prosody before we report
    result
}
