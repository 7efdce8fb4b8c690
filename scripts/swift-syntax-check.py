#!/usr/bin/env python3
"""Swift syntax gate: every Swift file given (or found under the given directories) must parse with
tree-sitter-swift. There is no Swift toolchain on the CI machine, so this is what CI can check of the
generated bindings (bindings/swift/generated), the package (ios/) and the sample app.

    python scripts/swift-syntax-check.py PATH...      (needs: pip install tree-sitter tree-sitter-swift)

The grammar lags the language in two constructs that UniFFI 0.32's generated code uses and that are
valid Swift; they are blanked before parsing (same line numbers) — nothing else is excused:
  - an attribute alone inside `#if swift(>=5.8) … #endif` before a declaration
    (`@_documentation(visibility: private)`)
  - `{ () }` (a closure returning the empty tuple)
A self-test (`--self-test`) proves a broken file still fails.
"""

import re
import sys
from pathlib import Path

import tree_sitter
import tree_sitter_swift

GRAMMAR_GAPS = [
    (re.compile(rb"#if swift\(>=5\.8\)\n[ \t]*@_documentation\(visibility: private\)\n[ \t]*#endif"), b"\n\n"),
    (re.compile(rb"\{ \(\) \}"), b"{ Void() }"),
]


def errors(parser, source):
    for pattern, replacement in GRAMMAR_GAPS:
        source = pattern.sub(replacement, source)
    tree = parser.parse(source)
    found = []

    def walk(node):
        if node.is_error or node.is_missing:
            found.append(node)
            return
        if node.has_error:
            for child in node.children:
                walk(child)

    walk(tree.root_node)
    lines = source.split(b"\n")
    return [
        (n.start_point[0] + 1, ("missing " if n.is_missing else "") + lines[n.start_point[0]].decode(errors="replace").strip())
        for n in found
    ]


def main(argv):
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))
    if argv == ["--self-test"]:
        fine = b"let ok = { () }\nstruct S {\n#if swift(>=5.8)\n    @_documentation(visibility: private)\n#endif\n    func f() {}\n}\n"
        assert errors(parser, fine) == [], errors(parser, fine)
        assert errors(parser, b"func broken( { let x = }\n"), "a broken file must fail"
        print("swift-syntax-check: self-test ok")
        return 0
    files = []
    for arg in argv:
        path = Path(arg)
        files += sorted(path.rglob("*.swift")) if path.is_dir() else [path]
    if not files:
        print("swift-syntax-check: no Swift files found in", " ".join(argv), file=sys.stderr)
        return 1
    failed = 0
    for f in files:
        problems = errors(parser, f.read_bytes())
        for line, text in problems[:10]:
            print(f"{f}:{line}: syntax error near: {text}")
        failed += bool(problems)
    print(f"swift-syntax-check: {len(files) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
