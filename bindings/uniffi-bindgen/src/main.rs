//! pmn's uniffi-bindgen: UniFFI's own command line, then two touches to the Kotlin it wrote that
//! UniFFI 0.32 offers no setting for (issue 14). Every caller — xtask, android/build-rust.sh —
//! runs this binary, so the Kotlin is the same wherever it is generated.
//!
//! 1. An error variant with fields gets `message = "detail=…, outcome=…"` from UniFFI; an app
//!    shows `e.message`, so a variant with a `detail` field gets that as its message instead.
//! 2. A variant without fields of an enum with data is a plain `object`, printed as
//!    `org.pmn.TrustSource$Paired@1b2c3d`; as a `data object` (Kotlin ≥ 1.9) it prints `Paired`.

use std::path::{Path, PathBuf};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    uniffi::uniffi_bindgen_main();
    if let Some(out_dir) = kotlin_out_dir(&args) {
        if let Err(e) = polish_dir(&out_dir) {
            eprintln!(
                "uniffi-bindgen: polishing the Kotlin in {}: {e}",
                out_dir.display()
            );
            std::process::exit(1);
        }
    }
}

/// The `--out-dir` of a `generate … --language kotlin` command line.
fn kotlin_out_dir(args: &[String]) -> Option<PathBuf> {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let generating = args.get(1).is_some_and(|a| a == "generate");
    let kotlin = value("--language").is_some_and(|l| l == "kotlin")
        || args.iter().any(|a| a == "--language=kotlin");
    (generating && kotlin)
        .then(|| value("--out-dir").map(PathBuf::from))
        .flatten()
}

fn polish_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            polish_dir(&path)?;
        } else if path.extension().is_some_and(|e| e == "kt") {
            let text = std::fs::read_to_string(&path)?;
            let polished = polish(&text);
            if polished != text {
                std::fs::write(&path, polished)?;
            }
        }
    }
    Ok(())
}

/// The two touches, line by line (the generated layout is UniFFI's template, stable per version).
fn polish(kotlin: &str) -> String {
    let mut out = String::with_capacity(kotlin.len());
    let mut lines = kotlin.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        // 1. `override val message` / `get() = "…detail=${ `detail` }…"`.
        if trimmed == "override val message" {
            if let Some(getter) = lines.peek() {
                if getter.trim_start().starts_with("get() = \"")
                    && getter.contains("detail=${ `detail` }")
                {
                    let getter_indent = &getter[..getter.len() - getter.trim_start().len()];
                    out.push_str(&format!(
                        "{indent}override val message: String\n{getter_indent}get() = `detail`\n"
                    ));
                    lines.next();
                    continue;
                }
            }
        }
        // 2. `object Paired : TrustSource()` inside a sealed class.
        if let Some(rest) = trimmed.strip_prefix("object ") {
            if rest.ends_with("()") && rest.contains(" : ") && !indent.is_empty() {
                out.push_str(&format!("{indent}data object {rest}\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_becomes_the_message() {
        let generated = "    class Fault(\n        val `code`: kotlin.Int, \n        val `detail`: kotlin.String\n        ) : PmnException() {\n        override val message\n            get() = \"code=${ `code` }, detail=${ `detail` }\"\n    }\n";
        let polished = polish(generated);
        assert!(
            polished
                .contains("        override val message: String\n            get() = `detail`\n"),
            "{polished}"
        );
        assert!(!polished.contains("detail=$"), "{polished}");
    }

    #[test]
    fn a_message_without_a_detail_stays() {
        let generated =
            "        override val message\n            get() = \"alias=${ `alias` }\"\n";
        assert_eq!(polish(generated), generated);
    }

    #[test]
    fn field_less_variants_become_data_objects() {
        let generated = "sealed class TrustSource {\n    object Paired : TrustSource()\n    \n}\npublic object FfiConverterTypeTrustSource : FfiConverterRustBuffer<TrustSource> {\n";
        let polished = polish(generated);
        assert!(
            polished.contains("    data object Paired : TrustSource()\n"),
            "{polished}"
        );
        assert!(
            polished.contains("public object FfiConverterTypeTrustSource"),
            "{polished}"
        );
    }

    #[test]
    fn only_kotlin_generation_is_polished() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            kotlin_out_dir(&args(
                "bindgen generate --library x.so --language kotlin --out-dir out"
            )),
            Some(PathBuf::from("out"))
        );
        assert_eq!(
            kotlin_out_dir(&args(
                "bindgen generate --library x.so --language swift --out-dir out"
            )),
            None
        );
    }
}
