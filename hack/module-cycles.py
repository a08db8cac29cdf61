#!/usr/bin/env python3
"""Fails when the modules of a Rust crate import each other in a cycle, or when a pure module
imports the writer, the controller or `kube::Api`.

A module is a file under the crate's src/ (`foo.rs` and `foo/mod.rs` are `foo`; `a/b.rs` is
`a::b`). Its imports are the `crate::` paths it names (in `use` lines and inline), resolved to the
longest module that exists. A submodule may name its parent and a parent its submodules (that
is nesting, not a cycle), so edges between a module and its own ancestors are ignored.

Usage: module-cycles.py [SRC_DIR] [--graph]   (SRC_DIR defaults to src)"""
import pathlib, re, sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
src = pathlib.Path(args[0] if args else "src")
show_graph = "--graph" in sys.argv

# Modules that must stay pure: they may not reach the writer, the controller or the API client.
PURE_PREFIXES = ("model", "pipeline", "api")
IMPURE = ("controller", "cache::watch", "cache::protobuf_watch", "cli")
API_CLIENT = re.compile(r"\bkube::(Api\b|api::Api\b|Client\b)|\bApi::<|\bApi<")


def module_of(path):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]) or (parts and parts[0] == "bin") or parts[-1] == "tests":
        return None  # the crate root, binaries, and test modules (tests may import anything)
    return "::".join(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.splitlines())


def test_free(text):
    """The text without `#[cfg(test)] mod ... { ... }` blocks: tests may import anything."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


files = {module_of(p): p for p in src.rglob("*.rs") if module_of(p)}
modules = set(files)


def resolve(path):
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in modules:
            return cand
    return None


def is_ancestor(a, b):
    return b.startswith(a + "::")


def imports(text):
    """Every `crate::a::b` path in the text, with `use crate::{a, b::{c}}` groups expanded."""
    found = set()
    for m in re.finditer(r"\bcrate::((?:\w+::)*)\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        found |= expand(m.group(1).rstrip(":"), text[m.end() : j - 1])
    for m in re.finditer(r"\bcrate::(\w+(?:::\w+)*)", text):
        found.add(m.group(1))
    return found


def expand(prefix, group):
    """`a::{b, c::{d, e}}` -> {a::b, a::c::d, a::c::e}."""
    items, depth, cur = [], 0, ""
    for ch in group:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    items.append(cur)
    out = set()
    for item in (i.strip() for i in items):
        if not item:
            continue
        m = re.match(r"((?:\w+::)*)\{(.*)\}$", item, flags=re.S)
        base = prefix + ("::" if prefix else "")
        if m:
            out |= expand(base + m.group(1).rstrip(":"), m.group(2))
        else:
            out.add(base + item.split(" as ")[0].strip())
    return out


graph, problems = {}, []
for mod, path in sorted(files.items()):
    text = test_free(strip_comments(path.read_text()))
    deps = set()
    for imp in imports(text):
        target = resolve(imp)
        if target and target != mod and not is_ancestor(target, mod) and not is_ancestor(mod, target):
            deps.add(target)
    graph[mod] = deps
    if mod.startswith(PURE_PREFIXES):
        for dep in sorted(deps):
            if dep.startswith(IMPURE):
                problems.append(f"{path}: pure module `{mod}` imports `{dep}`")
        if API_CLIENT.search(text):
            problems.append(f"{path}: pure module `{mod}` names the API client (kube::Api/Client)")


def collapse(graph):
    """Edges between top-level subtrees' members count for cycles too: `a::x -> b` and
    `b -> a::y` is a cycle between a and b. Work on the full module graph (Tarjan's SCCs)."""
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sccs


# The same at the level of subtrees: `a::x -> b` and `b -> a::y` is a cycle between `a` and `b`
# even when no single file imports back (data would still flow both ways between them).
def subtrees(depth):
    top = lambda m: "::".join(m.split("::")[:depth])
    out = {}
    for mod, deps in graph.items():
        out.setdefault(top(mod), set()).update(top(d) for d in deps if top(d) != top(mod))
    return out


for depth in (1, 2):
    for comp in collapse(subtrees(depth)):
        if all(graph.get(m) is not None for m in comp) and depth == 2 and all("::" not in m for m in comp):
            continue  # already a file-level cycle, reported below
        level = subtrees(depth)
        members = set(comp)
        edges = [f"{a} -> {b}" for a in comp for b in sorted(level[a]) if b in members]
        problems.append("import cycle between subtrees " + ", ".join(comp) + ":\n    " + "\n    ".join(edges))

for comp in collapse(graph):
    members = set(comp)
    edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in members]
    problems.append("import cycle between " + ", ".join(comp) + ":\n    " + "\n    ".join(edges))

if show_graph:
    for mod in sorted(graph):
        print(f"{mod}: {', '.join(sorted(graph[mod]))}")
for p in problems:
    print(p)
if problems:
    print(f"module-cycles: {len(problems)} problem(s) in {src}", file=sys.stderr)
    sys.exit(1)
print(f"module-cycles: {len(graph)} modules in {src}, no import cycles")
