#!/usr/bin/env python3
"""tests/circles.py: fails when two source files import each other, directly or round
a longer loop (issue 21: "no file-level import circles").

A file is a module (`src/reconcile/plan.rs` is `reconcile::plan`, a `mod.rs` its
folder). An edge A -> B is a path `crate::…` or `super::…` in A's code (comments and
`#[cfg(test)] mod` blocks left out) that names module B or an item in it; the longest
module prefix of the path that is a file is B. A file that uses its own folder's
`mod.rs` is an edge too: a re-export there does not hide a circle.

Usage: tests/circles.py [ROOT]   (prints each circle, exits 1 if there is one)
"""

import os
import re
import sys

MEMBERS = re.compile(r"^members\s*=\s*\[([^\]]*)\]", re.M)
PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")
TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(pub\s+)?mod \w+\s*\{")


def module_of(srcdir, path):
    parts = os.path.relpath(path, srcdir)[: -len(".rs")].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_of(path):
    """The file's code before its first test module, without comment lines."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    cut = TEST_MOD.search(text)
    if cut:
        text = text[: cut.start()]
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("//"))


def edges_of_crate(srcdir):
    files = {}
    for folder, _, names in os.walk(srcdir):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(folder, n)
                files[module_of(srcdir, p)] = p
    edges = {}
    for module, path in files.items():
        for m in PATH.finditer(code_of(path)):
            parts = m.group(2).strip(":").split("::")
            if m.group(1) == "crate":
                base = []
            else:
                # `super` from a.rs and from a/mod.rs alike is a's parent.
                base = list(module[:-1])
                while parts and parts[0] == "super":
                    base, parts = base[:-1], parts[1:]
            target = list(base)
            for p in parts:
                if tuple(target + [p]) in files:
                    target.append(p)
                else:
                    break
            target = tuple(target)
            if target != module and target in files and target != ():
                edges.setdefault(module, set()).add(target)
    return edges, files


def circles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    sys.setrecursionlimit(10000)
    bad = 0
    with open(os.path.join(root, "Cargo.toml"), encoding="utf-8") as f:
        members = re.findall(r'"([^"]+)"', MEMBERS.search(f.read()).group(1))
    crates = [os.path.normpath(os.path.join(m, "src")) for m in members]
    for srcdir in crates:
        edges, files = edges_of_crate(os.path.join(root, srcdir))
        for comp in circles(edges):
            bad += 1
            names = [os.path.relpath(files[m], root) for m in comp]
            print(f"circle in {srcdir}: " + " <-> ".join(names))
    if bad:
        print(f"tests/circles.py: {bad} import circle(s) between files", file=sys.stderr)
        return 1
    print(f"tests/circles.py: no import circle between files in {len(crates)} crates (the workspace's members)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
