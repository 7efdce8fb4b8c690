//! The phone artifacts `cargo xtask package` lays out as far as this machine can build them (no
//! NDK, no Xcode), under target/package/:
//!
//! - `android-aar/`: the AAR's contents — `classes.jar` (the Android flavour of the bindings, the
//!   shared hand-written layer and android/src/main/kotlin, compiled against the real framework
//!   jar by android/robolectric), `AndroidManifest.xml` (the library's, with the package and
//!   minSdk AGP would merge in), `proguard.txt` (consumer-rules.pro), an empty `R.txt`, and the
//!   `jni/<abi>/` slots. **Missing:** `jni/<abi>/libpmn.so`, which needs the NDK's linker
//!   (android/build-rust.sh with cargo-ndk); JNA's own `.so` files come from its AAR at the app's
//!   build. So the directory is not zipped into an `.aar`: it would not load on a phone.
//! - `swift-package/`: the Swift package inputs — Package.swift, Sources/PMN (hand-written +
//!   Generated/PMN.swift), Tests, and `headers/` (PMNFFI.h, module.modulemap) that
//!   ios/build-xcframework.sh hands to `xcodebuild -create-xcframework`. **Missing:**
//!   `PMNFFI.xcframework` (the static libraries for iOS device, simulator and macOS, linked by
//!   Xcode's tools), described in `PMNFFI.xcframework.missing`.
//!
//! [`check_aar`] and [`check_swift_package`] say what is absent; the package stage fails on
//! anything absent except the parts named missing above.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ctx::{run, Ctx, Failure, Result};

/// The Android ABIs the AAR carries (android/build-rust.sh builds the same three).
pub(crate) const ANDROID_ABIS: [&str; 3] = ["arm64-v8a", "armeabi-v7a", "x86_64"];

/// minSdk of the library (android/build.gradle.kts; the floor set by KeyGenParameterSpec).
const MIN_SDK: u32 = 23;

/// Where the layouts go.
pub(crate) fn package_dir(ctx: &Ctx) -> PathBuf {
    ctx.target_dir().join("package")
}

/// What is absent from the AAR layout at `dir`: files an AAR must have, then (separately) the
/// native libraries that cannot be linked here.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Missing {
    /// Absent although this machine can make them: a failure.
    pub(crate) buildable: Vec<String>,
    /// Absent because this machine cannot make them (NDK, Xcode): reported, not a failure.
    pub(crate) not_buildable_here: Vec<String>,
}

/// Checks the AAR layout at `dir`.
pub(crate) fn check_aar(dir: &Path) -> Missing {
    let mut missing = Missing::default();
    for file in [
        "AndroidManifest.xml",
        "classes.jar",
        "proguard.txt",
        "R.txt",
    ] {
        if !dir.join(file).is_file() {
            missing.buildable.push(file.to_string());
        }
    }
    // The classes an app calls first, and the ones Rust binds by name.
    if let Ok(names) = jar_entries(&dir.join("classes.jar")) {
        for class in [
            "org/pmn/Pmn.class",
            "org/pmn/PmnPlatform.class",
            "org/pmn/PmnLifecycle.class",
            "org/pmn/RemoteControl.class",
            "org/pmn/Controller.class",
        ] {
            if !names.iter().any(|n| n == class) {
                missing.buildable.push(format!("classes.jar!/{class}"));
            }
        }
        if names.iter().any(|n| n.starts_with("org/pmn/sample/")) {
            missing
                .buildable
                .push("classes.jar without the sample app's classes".into());
        }
    }
    if let Ok(manifest) = std::fs::read_to_string(dir.join("AndroidManifest.xml")) {
        for needle in ["package=\"org.pmn\"", "android:minSdkVersion=", "INTERNET"] {
            if !manifest.contains(needle) {
                missing
                    .buildable
                    .push(format!("AndroidManifest.xml: {needle}"));
            }
        }
    }
    for abi in ANDROID_ABIS {
        let slot = dir.join("jni").join(abi);
        if !slot.is_dir() {
            missing.buildable.push(format!("jni/{abi}/"));
        } else if !slot.join("libpmn.so").is_file() {
            missing
                .not_buildable_here
                .push(format!("jni/{abi}/libpmn.so (NDK link)"));
        }
    }
    missing
}

/// Checks the Swift package inputs at `dir`.
pub(crate) fn check_swift_package(dir: &Path) -> Missing {
    let mut missing = Missing::default();
    for file in [
        "Package.swift",
        "Sources/PMN/Generated/PMN.swift",
        "Sources/PMN/RemoteControl.swift",
        "Tests/PMNTests/RemoteControlTests.swift",
        "headers/PMNFFI.h",
        "headers/module.modulemap",
        "PMNFFI.xcframework.missing",
    ] {
        if !dir.join(file).is_file() {
            missing.buildable.push(file.to_string());
        }
    }
    // The module map must name the module the generated Swift imports.
    if let Ok(map) = std::fs::read_to_string(dir.join("headers/module.modulemap")) {
        if !map.contains("module PMNFFI") {
            missing
                .buildable
                .push("headers/module.modulemap: module PMNFFI".into());
        }
    }
    if let Ok(package) = std::fs::read_to_string(dir.join("Package.swift")) {
        if !package.contains("\"PMNFFI.xcframework\"") {
            missing
                .buildable
                .push("Package.swift: binaryTarget PMNFFI.xcframework".into());
        }
    }
    if !dir.join("PMNFFI.xcframework").is_dir() {
        missing
            .not_buildable_here
            .push("PMNFFI.xcframework (xcodebuild -create-xcframework on a Mac)".into());
    }
    missing
}

/// The entry names of the zip/jar at `jar` (`jar tf`).
fn jar_entries(jar: &Path) -> std::io::Result<Vec<String>> {
    let out = Command::new("jar").arg("tf").arg(jar).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("jar tf {}", jar.display())));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

fn io(step: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::new(step, e)
}

/// Lays out the AAR from the classes android/robolectric compiled (`classes`, its Maven
/// target/classes) and checks it.
pub(crate) fn lay_out_aar(ctx: &Ctx, classes: &Path) -> Result<PathBuf> {
    const STEP: &str = "package: android aar layout";
    let dir = package_dir(ctx).join("android-aar");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(STEP))?;
    // classes.jar: the library only — the sample app compiled beside it is not part of the AAR.
    let staging = package_dir(ctx).join("android-classes");
    let _ = std::fs::remove_dir_all(&staging);
    copy_tree_except(classes, &staging, &classes.join("org/pmn/sample")).map_err(io(STEP))?;
    run(
        STEP,
        Command::new("jar")
            .arg("--create")
            .arg("--file")
            .arg(dir.join("classes.jar"))
            .arg("-C")
            .arg(&staging)
            .arg("."),
    )?;
    let manifest = std::fs::read_to_string(ctx.root.join("android/src/main/AndroidManifest.xml"))
        .map_err(io(STEP))?;
    std::fs::write(dir.join("AndroidManifest.xml"), aar_manifest(&manifest)).map_err(io(STEP))?;
    std::fs::copy(
        ctx.root.join("android/consumer-rules.pro"),
        dir.join("proguard.txt"),
    )
    .map_err(io(STEP))?;
    // No resources, so no symbols: AGP writes an empty R.txt for such a library.
    std::fs::write(dir.join("R.txt"), "").map_err(io(STEP))?;
    for abi in ANDROID_ABIS {
        std::fs::create_dir_all(dir.join("jni").join(abi)).map_err(io(STEP))?;
    }
    report(STEP, &dir, check_aar(&dir))?;
    Ok(dir)
}

/// The library's manifest as AGP merges it into the AAR: the namespace as `package` and the
/// minSdk as `<uses-sdk>` (both live in build.gradle.kts, not in the source manifest).
pub(crate) fn aar_manifest(source: &str) -> String {
    let Some(open) = source.find("<manifest") else {
        return source.to_string(); // not a manifest: check_aar names what is absent
    };
    let Some(close) = source[open..].find('>').map(|at| open + at) else {
        return source.to_string();
    };
    format!(
        "{}\n    package=\"org.pmn\">\n    <uses-sdk android:minSdkVersion=\"{MIN_SDK}\" />{}",
        &source[..close],
        &source[close + 1..]
    )
}

/// Lays out the Swift package inputs from ios/ and the generated Swift in
/// bindings/swift/generated (the bindings stage's output), and checks them.
pub(crate) fn lay_out_swift_package(ctx: &Ctx) -> Result<PathBuf> {
    const STEP: &str = "package: swift package inputs";
    let dir = package_dir(ctx).join("swift-package");
    let _ = std::fs::remove_dir_all(&dir);
    let generated = ctx.root.join("bindings/swift/generated");
    for (from, to) in [
        (
            ctx.root.join("ios/Package.swift"),
            dir.join("Package.swift"),
        ),
        (
            generated.join("PMN.swift"),
            dir.join("Sources/PMN/Generated/PMN.swift"),
        ),
        (generated.join("PMNFFI.h"), dir.join("headers/PMNFFI.h")),
        // The xcframework's Clang module: the name the generated Swift imports (`import PMNFFI`).
        (
            generated.join("PMNFFI.modulemap"),
            dir.join("headers/module.modulemap"),
        ),
    ] {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(STEP))?;
        }
        std::fs::copy(&from, &to)
            .map_err(|e| Failure::new(STEP, format!("{}: {e}", from.display())))?;
    }
    for sub in ["Sources/PMN", "Tests/PMNTests"] {
        copy_swift_files(&ctx.root.join("ios").join(sub), &dir.join(sub)).map_err(io(STEP))?;
    }
    std::fs::write(
        dir.join("PMNFFI.xcframework.missing"),
        "PMNFFI.xcframework is not built on this machine (no Xcode). On a Mac,\n\
         ios/build-xcframework.sh builds libpmn.a (profile release-small) for aarch64-apple-ios,\n\
         aarch64-apple-ios-sim + x86_64-apple-ios (lipo) and aarch64/x86_64-apple-darwin (lipo),\n\
         then `xcodebuild -create-xcframework -library <lib> -headers headers` for the three,\n\
         with the headers/ directory beside this file. Place the result here as\n\
         PMNFFI.xcframework/ (slices ios-arm64, ios-arm64_x86_64-simulator, macos-arm64_x86_64).\n",
    )
    .map_err(io(STEP))?;
    report(STEP, &dir, check_swift_package(&dir))?;
    Ok(dir)
}

/// Copies the tree `from` to `to`, leaving out the subtree `except`.
fn copy_tree_except(from: &Path, to: &Path, except: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if path == except {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree_except(&path, &target, except)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

fn copy_swift_files(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "swift") {
            std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(())
}

/// Fails on buildable parts missing; prints the parts this machine cannot build.
fn report(step: &str, dir: &Path, missing: Missing) -> Result {
    if !missing.buildable.is_empty() {
        return Err(Failure::new(
            step,
            format!(
                "{} is incomplete: {}",
                dir.display(),
                missing.buildable.join(", ")
            ),
        ));
    }
    println!("xtask: laid out {}", dir.display());
    for part in &missing.not_buildable_here {
        println!("xtask:   missing (cannot be built here): {part}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aar_manifest_gets_the_namespace_and_min_sdk() {
        let source = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
            <manifest xmlns:android=\"http://schemas.android.com/apk/res/android\">\n\
            <uses-permission android:name=\"android.permission.INTERNET\" />\n</manifest>\n";
        let merged = aar_manifest(source);
        assert!(merged.contains("package=\"org.pmn\""), "{merged}");
        assert!(
            merged.contains("<uses-sdk android:minSdkVersion=\"23\" />"),
            "{merged}"
        );
        assert!(merged.contains("INTERNET"), "{merged}");
    }

    #[test]
    fn an_empty_layout_misses_every_part_and_names_the_native_ones_apart() {
        let dir = std::env::temp_dir().join(format!("pmn-layout-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("jni/arm64-v8a")).unwrap();
        let aar = check_aar(&dir);
        assert!(aar.buildable.contains(&"classes.jar".to_string()));
        assert!(aar.buildable.contains(&"jni/x86_64/".to_string()));
        assert_eq!(
            aar.not_buildable_here,
            vec!["jni/arm64-v8a/libpmn.so (NDK link)".to_string()]
        );
        let swift = check_swift_package(&dir);
        assert!(swift.buildable.contains(&"Package.swift".to_string()));
        assert_eq!(swift.not_buildable_here.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
