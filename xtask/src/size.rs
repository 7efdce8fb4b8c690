//! `cargo xtask size`: the release-small footprint of the shipped artefacts and the crates taking
//! most of it.

use std::path::Path;
use std::process::Command;

use crate::bench::rss_footprint;
use crate::ctx::{run, Ctx, Failure, Result};
use crate::mobile::mobile_script;

/// Crates listed by `cargo xtask size`.
pub(crate) const SIZE_TOP_CRATES: usize = 15;

/// `cargo xtask size`: builds the shipped artefacts with the `release-small` profile and prints
/// their sizes, then which crates their code and data come from (from the aarch64 staticlib's
/// symbol table, which a staticlib keeps).
pub(crate) fn size(ctx: &mut Ctx) -> Result {
    let host = ctx.stage("size: host cdylib (release-small)", |ctx| {
        run(
            "size: host cdylib",
            ctx.cargo().args([
                "rustc",
                "-p",
                "pmn",
                "--lib",
                "--crate-type",
                "cdylib",
                "--profile",
                "release-small",
            ]),
        )?;
        Ok(ctx.target_dir().join("release-small").join("libpmn.so"))
    })?;
    let android = ctx
        .target_dir()
        .join("mobile")
        .join("aarch64-linux-android")
        .join("release-small");
    ctx.stage("size: staticlib aarch64-linux-android", |ctx| {
        mobile_script(ctx, &["--staticlib", "aarch64-linux-android"])
    })?;
    ctx.stage("size: cdylib aarch64-linux-android (stub-linked)", |ctx| {
        mobile_script(ctx, &["--cdylib", "aarch64-linux-android"])
    })?;
    let artefacts = [
        ("x86_64-linux cdylib, stripped", host),
        (
            "aarch64-android cdylib, stripped (stub-linked)",
            android.join("libpmn.so"),
        ),
        (
            "aarch64-android staticlib (keeps symbols)",
            android.join("libpmn.a"),
        ),
    ];
    println!("\nxtask: footprint (profile release-small)");
    for (what, path) in &artefacts {
        let bytes = std::fs::metadata(path)
            .map_err(|e| Failure::new("size", format!("{}: {e}", path.display())))?
            .len();
        let code = code_and_data_bytes(path)
            .map(|b| format!("  code+data {b:>10} B"))
            .unwrap_or_default();
        println!(
            "  {what:<48} {bytes:>10} B  {:>6.2} MiB{code}",
            bytes as f64 / 1048576.0
        );
    }
    let staticlib = &artefacts[2].1;
    let crates = crate_sizes(staticlib).map_err(|e| Failure::new("size", e))?;
    let total: u64 = crates.iter().map(|(_, b)| b).sum();
    println!(
        "\nxtask: code and data by crate in the aarch64 staticlib (symbol sizes, {total} B in all; \
         a generic instance counts for the first non-std crate it names)"
    );
    for (name, bytes) in crates.iter().take(SIZE_TOP_CRATES) {
        println!(
            "  {name:<28} {bytes:>9} B  {:>5.1} %",
            *bytes as f64 * 100.0 / total.max(1) as f64
        );
    }
    ctx.stage("size: RSS (benches/soak.rs footprint)", rss_footprint)
}

/// text + data of an ELF file or archive (`llvm-size`, Berkeley format), if llvm-size runs.
pub(crate) fn code_and_data_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("llvm-size")
        .arg("-B")
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "   text    data     bss     dec     hex filename", one line per member of an archive.
    let sum = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let text: u64 = f.next()?.parse().ok()?;
            let data: u64 = f.next()?.parse().ok()?;
            Some(text + data)
        })
        .sum();
    Some(sum)
}

/// Bytes of defined symbols per crate in `lib` (`llvm-nm --print-size`, demangled), largest first.
pub(crate) fn crate_sizes(lib: &Path) -> std::result::Result<Vec<(String, u64)>, String> {
    let out = Command::new("llvm-nm")
        .args(["--print-size", "--demangle", "--radix=d", "--defined-only"])
        .arg(lib)
        .output()
        .map_err(|e| format!("cannot run llvm-nm: {e}"))?;
    // llvm-nm exits non-zero for archive members that are not objects (the staticlib's
    // `lib.rmeta`) after listing the others: only no output at all is a failure.
    if out.stdout.is_empty() {
        return Err(format!(
            "llvm-nm {} listed nothing: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut by_crate = std::collections::HashMap::<String, u64>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "<address> <size> <type> <name>"; archive member headers and size-less symbols skipped.
        let mut f = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(_), Some(name)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        *by_crate.entry(symbol_crate(name)).or_default() += size;
    }
    let mut v: Vec<_> = by_crate.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(v)
}

/// The crate a demangled symbol belongs to: the first path root it names that is not the
/// standard library (`core::ptr::drop_in_place<xso::X>` → `xso`), else `std`; C symbols by prefix.
pub(crate) fn symbol_crate(name: &str) -> String {
    const STD: [&str; 4] = ["core", "alloc", "std", "compiler_builtins"];
    if name.starts_with("ring_core_") || name.starts_with("RING_") {
        return "ring (C)".into();
    }
    // Local symbols renamed by LTO keep the legacy escapes undemangled:
    // `_$LT$xso..Foo$u20$as$u20$core..iter..Iterator$GT$::next`.
    let unescaped;
    let name = if name.contains('$') || name.contains("..") {
        let mut n = name.to_string();
        for (from, to) in [
            ("$LT$", "<"),
            ("$GT$", ">"),
            ("$u20$", " "),
            ("$RF$", "&"),
            ("$BP$", "*"),
            ("$C$", ","),
            ("$LP$", "("),
            ("$RP$", ")"),
            ("$u5b$", "["),
            ("$u5d$", "]"),
            ("..", "::"),
        ] {
            n = n.replace(from, to);
        }
        unescaped = n;
        unescaped.strip_prefix('_').unwrap_or(&unescaped)
    } else {
        name
    };
    let mut roots = Vec::new();
    let bytes = name.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let ident = b.is_ascii_alphanumeric() || b == b'_';
        match (start, ident) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let preceded = s == 0
                    || matches!(bytes[s - 1], b'<' | b' ' | b'&' | b'(' | b'*' | b',' | b'[');
                if preceded && name[i..].starts_with("::") {
                    roots.push(&name[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    match roots.iter().find(|r| !STD.contains(r)) {
        Some(root) => (*root).to_string(),
        None if !roots.is_empty() => "std".into(),
        None => "[C and other symbols]".into(),
    }
}

#[cfg(test)]
mod size_tests {
    use super::symbol_crate;

    #[test]
    fn symbols_are_attributed_to_the_first_non_std_crate_they_name() {
        for (symbol, want) in [
            ("tokio::runtime::park::CachedParkThread::block_on", "tokio"),
            ("core::ptr::drop_in_place<xso::fromxml::Foo>", "xso"),
            (
                "<alloc::vec::Vec<minidom::Element> as core::ops::drop::Drop>::drop",
                "minidom",
            ),
            ("<&T as core::fmt::Debug>::fmt", "std"),
            ("core::fmt::write", "std"),
            ("ring_core_0_17_14__x25519_sc_mask", "ring (C)"),
            (
                "_$LT$xmpp_parsers..jingle..JingleAsXmlIterator$u20$as$u20$core..iter..traits..\
                 iterator..Iterator$GT$::next::hc9449a5ceee7f215",
                "xmpp_parsers",
            ),
            ("memcpy", "[C and other symbols]"),
        ] {
            assert_eq!(symbol_crate(symbol), want, "{symbol}");
        }
    }
}
