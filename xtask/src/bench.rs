//! `cargo xtask bench [NAME]`: the benchmarks, with Prosody and the interop peers installed;
//! `cargo xtask bench field`: the field benchmark (tests/field.rs `field_bench`, as root).

use std::process::Command;

use crate::ctx::{run, Ctx, Result};
use crate::install::{
    install_field_peers, install_interop_peers, install_prosody, FIELD_PYTHON_ENV,
    SLIXMPP_PYTHON_ENV,
};

/// `cargo xtask bench [NAME]`: Prosody and the interop peers, then `cargo bench` (only NAME when given).
pub(crate) fn bench(ctx: &mut Ctx, name: Option<&str>) -> Result {
    if name == Some("field") {
        return field_bench(ctx);
    }
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("interop peers", install_interop_peers)?;
    ctx.stage("bench", |ctx| {
        let mut cmd = ctx.cargo();
        cmd.args(["bench", "--features", "test-ca"])
            .env(SLIXMPP_PYTHON_ENV, &python);
        if let Some(name) = name {
            cmd.args(["--bench", name]);
        }
        run("bench", &mut cmd)
    })
}

/// `cargo xtask bench field`: the field harness's benchmark, printed as ratios — recovery after
/// kill -9 against after a graceful restart (medians of 10), calls under 10 % loss against
/// clean (median and p99), and reconnect logins per second while the server is down. It builds
/// network namespaces, so it needs root; elsewhere it says so and does nothing. Bounded: about
/// three minutes once built (each part has its own time limit inside the test).
fn field_bench(ctx: &mut Ctx) -> Result {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        println!("SKIPPED bench field: needs root (network namespaces, veth, iptables)");
        return Ok(());
    }
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("field peers", install_field_peers)?;
    ctx.stage("bench field", |ctx| {
        run(
            "bench field",
            ctx.cargo()
                .args([
                    "test",
                    "--features",
                    "test-ca",
                    "--test",
                    "field",
                    "--",
                    "--ignored",
                    "--exact",
                    "field_bench",
                    "--nocapture",
                ])
                .env(FIELD_PYTHON_ENV, &python),
        )
    })
}
