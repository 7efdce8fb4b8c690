//! `cargo xtask`: the project's single entry point for the demo, the whole test suite, the
//! generated bindings and the benchmarks. Aliased in `.cargo/config.toml`:
//! `[alias] xtask = "run --quiet --package xtask --"`.

mod android;
mod bench;
mod bindings;
mod ctx;
mod demo;
mod fuzz;
mod install;
mod layout;
mod mobile;
mod package;
mod size;
mod snippets;
mod suite;

use std::env;
use std::process::ExitCode;

use crate::android::{android_jvm, AndroidJvm};
use crate::bench::{bench, soak};
use crate::bindings::{bindings, kotlin_jvm_tests};
use crate::ctx::Ctx;
use crate::demo::demo;
use crate::fuzz::{fuzz, FuzzArgs};
use crate::install::install_prosody;
use crate::mobile::mobile_check;
use crate::package::{package, Build};
use crate::size::size;
use crate::suite::{field, test};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo              start a local Prosody and run `pmn demo` against it
  test              the whole suite: fmt, clippy, cargo test (with the fuzz corpus replay),
                    a few seconds of fuzzing per target (PMN_FUZZ_SMOKE=0: none),
                    bindings, Kotlin JVM tests, the packaged artifacts, android/src and the
                    Android sample compiled against the real framework jar, the mobile compile
                    gates
  field             the field harness (tests/field.rs: network namespaces, NAT, a moving
                    phone, federation, kill -9, packet loss) in its long versions; as root
  bindings          build libpmn and generate the Kotlin and Swift bindings
  kotlin            the bindings, then only the Kotlin JVM tests (against a fresh Prosody), the
                    Android Kotlin under Robolectric, and the packaged artifact with its sample app
  sample            the bindings, then only the packaged artifact with its sample app: the
                    README's and KDoc's Kotlin snippets compiled, the README's flow run
  bench [NAME]      run the benchmarks (only NAME when given); `bench field`: the field
                    benchmark (recovery after kill -9 vs graceful restart, calls under loss
                    vs clean, logins per second during an outage), as root; `bench kotlin`:
                    events into a Kotlin listener and flow against a no-op call (JVM)
  soak [MINUTES]    200 providers and 50 controllers on one network for MINUTES (default 10):
                    no lost call, RSS slopes, discovery against presence delivery;
                    `soak --leak-check [MINUTES]`: 20 x 5 for MINUTES (default 1) under valgrind
  mobile-check      phone gates: cargo check for 4 Android/iOS targets, the aarch64-android
                    release staticlib (size), the Android Kotlin (bindings with android = true)
                    compiled against android-all and its Robolectric tests (Pmn.initAndroid
                    with a real Context), the AAR layout, the Swift syntax gate
  package           the JVM artifact org.pmn:pmn-kotlin (Kotlin + libpmn.so as a JNA resource)
                    from the release library, installed into ~/.m2, and a sample Maven project
                    outside the tree built against it; the Android AAR's layout and the Swift
                    package inputs in target/package (no .so / xcframework: NDK, Xcode)
  size              release-small footprint: the stripped host cdylib, the aarch64-android
                    staticlib and cdylib (stub-linked), in bytes, and the crates taking most;
                    then RSS: a controller seeing 100 providers, a provider per extra provider
  fuzz [TARGET] [SECONDS | RUNS]
                    run the fuzz targets of fuzz/ (cargo-fuzz on nightly; all, or only
                    TARGET) for SECONDS each (default 60) or RUNS executions each
                    (`500k`, `10M`), then print the executions
  help              this text
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let mut ctx = Ctx::new();
    let result = match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("demo") if args.len() == 1 => demo(&mut ctx),
        Some("test") if args.len() == 1 => test(&mut ctx),
        Some("field") if args.len() == 1 => field(&mut ctx),
        Some("bindings") if args.len() == 1 => ctx.stage("bindings", bindings),
        Some("kotlin") if args.len() == 1 => ctx
            .stage("prerequisites", install_prosody)
            .and_then(|()| ctx.stage("bindings", bindings))
            .and_then(|()| ctx.stage("kotlin jvm tests", kotlin_jvm_tests))
            .and_then(|()| {
                ctx.stage("android: robolectric tests", |ctx| {
                    let native_dir = ctx.target_dir().join("debug");
                    android_jvm(ctx, AndroidJvm::Robolectric, &native_dir)
                })
            })
            .and_then(|()| {
                ctx.stage("package + sample app", |ctx| {
                    package(ctx, Build::SuiteDebug)
                })
            }),
        Some("sample") if args.len() == 1 => ctx
            .stage("prerequisites", install_prosody)
            .and_then(|()| ctx.stage("bindings", bindings))
            .and_then(|()| {
                ctx.stage("package + sample app", |ctx| {
                    package(ctx, Build::SuiteDebug)
                })
            }),
        Some("bench") if args.len() <= 2 => bench(&mut ctx, args.get(1).map(String::as_str)),
        Some("soak") if args.len() <= 3 => soak(&mut ctx, &args[1..]),
        Some("mobile-check") if args.len() == 1 => mobile_check(&mut ctx),
        Some("package") if args.len() == 1 => {
            ctx.stage("package", |ctx| package(ctx, Build::Release))
        }
        Some("size") if args.len() == 1 => size(&mut ctx),
        Some("fuzz") if args.len() <= 3 => match FuzzArgs::parse(&args[1..]) {
            Some(fuzz_args) => fuzz(&mut ctx, fuzz_args),
            None => {
                eprintln!(
                    "xtask: fuzz [TARGET] [SECONDS | RUNS]: bad arguments {:?}\n",
                    &args[1..]
                );
                eprint!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        Some(_) => {
            eprintln!("xtask: unknown command or arguments: {}\n", args.join(" "));
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    ctx.summary();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.evidence.is_empty() {
                println!(
                    "\n==== xtask: why '{}' failed (from its output) ====",
                    failure.step
                );
                for line in &failure.evidence {
                    println!("{line}");
                }
            }
            eprintln!(
                "xtask: FAILED at step '{}': {}",
                failure.step, failure.detail
            );
            ExitCode::from(failure.code)
        }
    }
}
