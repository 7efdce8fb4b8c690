//! Prerequisites: Debian packages (apt-get), Prosody and ejabberd (through pmn-testkit's
//! scripts), the interop peers (slixmpp in a venv, mpv), and starting a fresh test Prosody.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmn_testkit::TestServer;

use crate::ctx::{have, run, Ctx, Failure, Result};

/// `apt-get update` + `apt-get install -y PACKAGES` (with sudo when not root).
pub(crate) fn apt_install(step: &str, packages: &[&str]) -> Result {
    println!("xtask: installing {} with apt-get", packages.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(step, &mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq"]);
    install.args(packages);
    run(step, &mut install)
}

/// Installs Prosody (and openssl) through tests/prosody/prosody.sh if missing.
pub(crate) fn install_prosody(_: &mut Ctx) -> Result {
    pmn_testkit::install().map_err(|e| Failure::new("prerequisites", e))?;
    // The second test server (a subset of the integration tests runs against it).
    let script = pmn_testkit::ServerKind::Ejabberd.script();
    run(
        "prerequisites",
        Command::new("bash").arg(script).arg("install"),
    )
}

/// The environment variable through which tests and benches find the Python that has slixmpp.
pub(crate) const SLIXMPP_PYTHON_ENV: &str = "PMN_SLIXMPP_PYTHON";
/// The slixmpp release the interop tests are pinned to (PyPI).
pub(crate) const SLIXMPP_VERSION: &str = "1.17.0";

/// The third-party peers of the interop tests, installed idempotently: slixmpp in a venv under
/// target/interop-venv (PyPI), and mpv (Debian) for the real-player test. Returns the venv's
/// python.
pub(crate) fn install_interop_peers(ctx: &mut Ctx) -> Result<PathBuf> {
    const STEP: &str = "interop peers";
    if !have("mpv") {
        apt_install(STEP, &["mpv"])?;
    }
    let venv = ctx.target_dir().join("interop-venv");
    let python = venv.join("bin").join("python");
    let has_slixmpp = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import slixmpp, sys; sys.exit(slixmpp.__version__ != sys.argv[1])",
            ])
            .arg(SLIXMPP_VERSION)
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && has_slixmpp(&python) {
        println!(
            "xtask: slixmpp {SLIXMPP_VERSION} already in {}",
            venv.display()
        );
        return Ok(python);
    }
    if !have("python3") {
        apt_install(STEP, &["python3", "python3-venv"])?;
    }
    make_venv(STEP, &venv, &["python3-venv"])?;
    pip_install(STEP, &python, &[&format!("slixmpp=={SLIXMPP_VERSION}")])?;
    if !has_slixmpp(&python) {
        return Err(Failure::new(STEP, "slixmpp did not install"));
    }
    Ok(python)
}

/// Makes the venv `venv` (`python3 -m venv`) unless it has a python already. When that fails,
/// installs `apt_packages` (Debian's python3 lacks ensurepip without python3-venv) and tries once
/// more.
pub(crate) fn make_venv(step: &str, venv: &Path, apt_packages: &[&str]) -> Result {
    if venv.join("bin").join("python").is_file() {
        return Ok(());
    }
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(venv)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        apt_install(step, apt_packages)?;
        run(
            step,
            Command::new("python3").arg("-m").arg("venv").arg(venv),
        )?;
    }
    Ok(())
}

/// `python -m pip install` of the pinned `packages`, quietly.
pub(crate) fn pip_install(step: &str, python: &Path, packages: &[&str]) -> Result {
    run(
        step,
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages),
    )
}

/// Starts a fresh test Prosody (stopped when the returned server drops).
pub(crate) fn start_prosody(_: &mut Ctx) -> Result<TestServer> {
    let server = TestServer::start().map_err(|e| Failure::new("prosody", e))?;
    println!(
        "xtask: prosody on {} (CA {})",
        server.addr(),
        server.ca_path().display()
    );
    Ok(server)
}

/// The environment variable through which tests/field.rs finds the Python that has
/// `netfilterqueue` (its packet-loss shaper).
pub(crate) const FIELD_PYTHON_ENV: &str = "PMN_FIELD_PYTHON";
/// The netfilterqueue release the field harness is pinned to (PyPI).
pub(crate) const NETFILTERQUEUE_VERSION: &str = "1.1.0";

/// What tests/field.rs needs, installed idempotently: iptables (Debian), and PyPI's
/// `netfilterqueue` in a venv under target/field-venv (it builds against Debian's
/// libnetfilter-queue-dev and libnfnetlink-dev). Returns the venv's python. The field tests
/// themselves skip (with a message) where they cannot run, e.g. without root.
pub(crate) fn install_field_peers(ctx: &mut Ctx) -> Result<PathBuf> {
    const STEP: &str = "field peers";
    if !have("iptables") {
        apt_install(STEP, &["iptables"])?;
    }
    let venv = ctx.target_dir().join("field-venv");
    let python = venv.join("bin").join("python");
    let has_nfq = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import sys; from importlib.metadata import version; \
                 import netfilterqueue; sys.exit(version('NetfilterQueue') != sys.argv[1])",
            ])
            .arg(NETFILTERQUEUE_VERSION)
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && has_nfq(&python) {
        println!(
            "xtask: netfilterqueue {NETFILTERQUEUE_VERSION} already in {}",
            venv.display()
        );
        return Ok(python);
    }
    let headers = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Status}\n",
            "libnetfilter-queue-dev",
            "libnfnetlink-dev",
        ])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("install ok installed"))
                .count()
                == 2
        });
    if !headers {
        apt_install(STEP, &["libnetfilter-queue-dev", "libnfnetlink-dev"])?;
    }
    if !have("python3") {
        apt_install(STEP, &["python3", "python3-venv"])?;
    }
    make_venv(STEP, &venv, &["python3-venv"])?;
    pip_install(
        STEP,
        &python,
        &[&format!("NetfilterQueue=={NETFILTERQUEUE_VERSION}")],
    )?;
    if !has_nfq(&python) {
        return Err(Failure::new(STEP, "netfilterqueue did not install"));
    }
    Ok(python)
}
