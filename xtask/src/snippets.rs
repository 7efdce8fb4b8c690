//! Docs that compile and run (issue 14): every ```` ```kotlin ```` block of README.md and of the
//! KDoc in bindings/kotlin becomes a function of one generated Kotlin file, which the packaged
//! sample (bindings/kotlin/package-sample) is compiled with; the sample calls the README's
//! newcomer flow against the test Prosody. The generated file exists only in the sample's copy
//! outside the tree, so what the README says and what the suite compiles cannot drift apart.
//!
//! A block's info string after `kotlin` is the header of its function (what the block may use
//! without defining it), e.g. ```` ```kotlin Household.ownerPhone() ```` or
//! ```` ```kotlin playerDoc(controller: Controller, provider: ProviderInfo) ````; GitHub and
//! Dokka read only the first word, so the header does not show. A block without one gets a
//! name from its place (`readmeLine89`) and no parameters: it must stand alone. Each function
//! is `suspend` and runs its block in `coroutineScope`, so a block may call suspend functions and
//! `launch`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::ctx::{Ctx, Failure, Result};

/// One ```` ```kotlin ```` block: where it is, its function header, its text (indentation and
/// KDoc's ` * ` removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snippet {
    /// `README.md:89`: the line of the opening fence.
    pub(crate) origin: String,
    /// `Household.ownerPhone()`, or `readmeLine89()` when the block names none.
    pub(crate) header: String,
    pub(crate) body: String,
}

/// The Kotlin blocks of a Markdown text (`label` names the file in the generated comments). A
/// fence may be indented (inside a list item): that indentation is taken off every line.
pub(crate) fn markdown_blocks(label: &str, text: &str) -> Vec<Snippet> {
    blocks(label, text, |line| Some(line))
}

/// The Kotlin blocks inside the `/** … */` comments of a Kotlin source: each line's leading
/// `*` (and one space after it) is removed first.
pub(crate) fn kdoc_blocks(label: &str, text: &str) -> Vec<Snippet> {
    let mut in_comment = false;
    blocks(label, text, move |line| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("/**") {
            in_comment = !trimmed.contains("*/");
            return None;
        }
        if !in_comment {
            return None;
        }
        if trimmed.starts_with("*/") {
            in_comment = false;
            return None;
        }
        let rest = trimmed.strip_prefix('*')?;
        Some(rest.strip_prefix(' ').unwrap_or(rest))
    })
}

/// The blocks of `text`, whose lines `strip` maps to the Markdown they carry (`None`: not
/// documentation).
fn blocks<'a>(
    label: &str,
    text: &'a str,
    mut strip: impl FnMut(&'a str) -> Option<&'a str>,
) -> Vec<Snippet> {
    let stem = label
        .rsplit('/')
        .next()
        .unwrap_or(label)
        .split('.')
        .next()
        .unwrap_or(label)
        .to_ascii_lowercase();
    let mut out = Vec::new();
    // (origin, header, fence indentation, lines so far)
    let mut open: Option<(String, String, usize, Vec<String>)> = None;
    for (index, raw) in text.lines().enumerate() {
        let Some(line) = strip(raw) else {
            // Out of the documentation (a KDoc comment ended): a block left open is dropped.
            open = None;
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```kotlin") {
                    if !info.is_empty() && !info.starts_with(' ') {
                        continue; // ```kotlinx or the like: not ours
                    }
                    let number = index + 1;
                    let header = match info.trim() {
                        "" => format!("{stem}Line{number}()"),
                        given => given.to_string(),
                    };
                    open = Some((format!("{label}:{number}"), header, indent, Vec::new()));
                }
            }
            Some((origin, header, fence, lines)) => {
                if trimmed.starts_with("```") {
                    out.push(Snippet {
                        origin: std::mem::take(origin),
                        header: std::mem::take(header),
                        body: lines.join("\n"),
                    });
                    open = None;
                } else {
                    let cut = indent.min(*fence);
                    lines.push(line[cut..].trim_end().to_string());
                }
            }
        }
    }
    out
}

/// The Kotlin file of `snippets`, in package `package` (which must hold the receivers and types
/// the headers name: the sample's `Household`).
pub(crate) fn render(package: &str, snippets: &[Snippet]) -> String {
    let mut out = String::new();
    out.push_str(
        "// Generated by cargo xtask (xtask/src/snippets.rs) from the ```kotlin blocks named in each\n\
         // function's comment: edit those, not this file. Compiled (and partly run) by the suite.\n\
         @file:Suppress(\"UNUSED_VARIABLE\", \"UNUSED_PARAMETER\", \"UNUSED_EXPRESSION\", \"unused\")\n\n",
    );
    let _ = writeln!(out, "package {package}\n");
    for import in [
        "kotlin.time.Duration.Companion.hours",
        "kotlin.time.Duration.Companion.milliseconds",
        "kotlin.time.Duration.Companion.minutes",
        "kotlin.time.Duration.Companion.seconds",
        "kotlinx.coroutines.*",
        "kotlinx.coroutines.flow.*",
        "org.pmn.*",
    ] {
        let _ = writeln!(out, "import {import}");
    }
    for snippet in snippets {
        let _ = writeln!(
            out,
            "\n/** {} */\nsuspend fun {}: Unit = coroutineScope {{",
            snippet.origin, snippet.header
        );
        for line in snippet.body.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "    {line}");
            }
        }
        out.push_str("}\n");
    }
    out
}

/// Where the snippets come from: README.md, and every hand-written and generated Kotlin file of
/// bindings/kotlin/src/main (the generated KDoc carries the Rust doc comments of src/ffi).
fn sources(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = vec![root.join("README.md")];
    for dir in ["kotlin-handwritten", "kotlin"] {
        kotlin_files(&root.join("bindings/kotlin/src/main").join(dir), &mut files)?;
    }
    Ok(files)
}

fn kotlin_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            kotlin_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "kt") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every snippet of the tree.
pub(crate) fn collect(root: &Path) -> std::io::Result<Vec<Snippet>> {
    let mut all = Vec::new();
    for path in sources(root)? {
        let text = std::fs::read_to_string(&path)?;
        let label = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let found = if label.ends_with(".md") {
            markdown_blocks(&label, &text)
        } else {
            kdoc_blocks(&label, &text)
        };
        // UniFFI repeats a type's docstring (on `Controller` and `ControllerInterface`): the same
        // block twice is one function.
        for snippet in found {
            if !all
                .iter()
                .any(|s: &Snippet| s.header == snippet.header && s.body == snippet.body)
            {
                all.push(snippet);
            }
        }
    }
    Ok(all)
}

/// Writes the snippets of the tree as `Snippets.kt` of package `org.pmn.packaged` into the
/// sample copy at `sample` and returns how many there are.
pub(crate) fn write_into_sample(ctx: &Ctx, sample: &Path) -> Result<usize> {
    const STEP: &str = "package: the docs' Kotlin snippets";
    let snippets = collect(&ctx.root).map_err(|e| Failure::new(STEP, e))?;
    let dir = sample.join("src/main/kotlin/org/pmn/packaged");
    let file = dir.join("Snippets.kt");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, render("org.pmn.packaged", &snippets)))
        .map_err(|e| Failure::new(STEP, format!("{}: {e}", file.display())))?;
    for snippet in &snippets {
        println!("xtask: snippet {} → fun {}", snippet.origin, snippet.header);
    }
    Ok(snippets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_blocks_keep_their_header_and_lose_their_indentation() {
        let text = "intro\n\n```kotlin Household.ownerPhone()\nval a = 1\n    call(a)\n```\n\
                    - item:\n\n  ```kotlin\n  val b = 2\n\n  println(b)\n  ```\n```kotlinx\nno\n```\n";
        let blocks = markdown_blocks("README.md", text);
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        assert_eq!(blocks[0].origin, "README.md:3");
        assert_eq!(blocks[0].header, "Household.ownerPhone()");
        assert_eq!(blocks[0].body, "val a = 1\n    call(a)");
        assert_eq!(blocks[1].origin, "README.md:9");
        assert_eq!(blocks[1].header, "readmeLine9()");
        assert_eq!(blocks[1].body, "val b = 2\n\nprintln(b)");
    }

    #[test]
    fn kdoc_blocks_lose_the_stars_and_stay_inside_comments() {
        let text = "/**\n * Doc.\n *\n * ```kotlin doc(c: Controller)\n * c.connect()\n *     .let { }\n \
                    * ```\n */\nclass X\n// ```kotlin\n// not doc\n// ```\n    /**\n     * ```kotlin\n     \
                    * val x = 1\n     */\n";
        let blocks = kdoc_blocks("bindings/kotlin/src/main/kotlin/org/pmn/pmn.kt", text);
        assert_eq!(blocks.len(), 1, "{blocks:?}");
        assert_eq!(blocks[0].header, "doc(c: Controller)");
        assert_eq!(blocks[0].body, "c.connect()\n    .let { }");
        assert_eq!(
            blocks[0].origin,
            "bindings/kotlin/src/main/kotlin/org/pmn/pmn.kt:4"
        );
    }

    #[test]
    fn render_wraps_each_block_in_a_suspend_function() {
        let kotlin = render(
            "org.example",
            &[Snippet {
                origin: "README.md:3".into(),
                header: "Household.ownerPhone()".into(),
                body: "val a = 1\n\nshow(a)".into(),
            }],
        );
        assert!(kotlin.contains("package org.example\n"), "{kotlin}");
        assert!(
            kotlin.contains(
                "/** README.md:3 */\nsuspend fun Household.ownerPhone(): Unit = coroutineScope {\n    \
                 val a = 1\n\n    show(a)\n}\n"
            ),
            "{kotlin}"
        );
    }

    /// The README's newcomer flow is there, under the names the sample calls.
    #[test]
    fn the_readme_carries_the_flow_the_sample_runs() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let headers: Vec<String> = markdown_blocks("README.md", &readme)
            .into_iter()
            .map(|s| s.header)
            .collect();
        for wanted in ["Household.ownerPhone()", "Household.guestPhone()"] {
            assert!(
                headers.iter().any(|h| h == wanted),
                "{wanted} in {headers:?}"
            );
        }
    }
}
