//! `cargo xtask bench [NAME]`: the benchmarks, with Prosody and the interop peers installed.

use crate::ctx::{run, Ctx, Result};
use crate::install::{install_interop_peers, install_prosody, SLIXMPP_PYTHON_ENV};

/// `cargo xtask bench [NAME]`: Prosody and the interop peers, then `cargo bench` (only NAME when given).
/// `pubsub` needs the `sources` feature and runs only when named.
pub(crate) fn bench(ctx: &mut Ctx, name: Option<&str>) -> Result {
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("interop peers", install_interop_peers)?;
    ctx.stage("bench", |ctx| {
        let mut cmd = ctx.cargo();
        // The pubsub bench browses the source provider, which only the `sources` feature builds;
        // the others keep the phone library's feature set.
        let features = if name == Some("pubsub") {
            "test-ca,sources"
        } else {
            "test-ca"
        };
        cmd.args(["bench", "--features", features])
            .env(SLIXMPP_PYTHON_ENV, &python);
        if let Some(name) = name {
            cmd.args(["--bench", name]);
        }
        run("bench", &mut cmd)
    })
}
