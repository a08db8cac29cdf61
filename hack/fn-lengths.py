#!/usr/bin/env python3
"""Fails when a Rust function in src/, bench/src/ or testkit/src/ is longer than the limit (120
lines by default): long functions hide the pipeline. Counts from the `fn` line to its closing
brace, by brace depth, ignoring braces in strings, chars and comments. Also fails when a file of
the benchmark (bench/src/) is over 500 lines: it is split by concern. Usage: fn-lengths.py
[LIMIT] [--top N]"""
import pathlib, re, sys

limit = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 120
top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 0
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")

def code_only(line):
    """The line without string/char literals and // comments (good enough for rustfmt'd code)."""
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if line.startswith("//", i):
            break
        if c == '"':
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
            continue
        if c == "'" and i + 2 < n and (line[i + 2] == "'" or line[i + 1] == "\\"):
            j = line.find("'", i + 2)
            i = j + 1 if j > 0 else i + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)

FILE_LIMIT = 500  # lines per file in bench/src
paths = sorted(p for root in ["src", "bench/src", "testkit/src"] for p in pathlib.Path(root).rglob("*.rs"))
long_files = [(len(p.read_text().splitlines()), p) for p in paths if p.parts[:2] == ("bench", "src")]
long_files = [(n, p) for n, p in long_files if n > FILE_LIMIT]
for n, path in long_files:
    print(f"{path}: {n} lines (limit {FILE_LIMIT})", file=sys.stderr)

found = []
for path in paths:
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FN.match(lines[i])
        if not m:
            i += 1
            continue
        depth, start, j, opened = 0, i, i, False
        while j < len(lines):
            code = code_only(lines[j])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                found.append((j - start + 1, f"{path}:{start + 1}", m.group(6)))
                break
            j += 1
        i += 1
found.sort(reverse=True)
for length, where, name in found[:top]:
    print(f"{length:5} {where} {name}")
over = [f for f in found if f[0] > limit]
for length, where, name in over:
    print(f"{where}: fn {name} is {length} lines (limit {limit})", file=sys.stderr)
sys.exit(1 if over or long_files else 0)
