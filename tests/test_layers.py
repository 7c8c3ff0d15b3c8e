"""The package's import graph, every import counted (inside functions too): no cycle between
modules, and each layer imports only the layers below it (CONTRIBUTING.md)."""
import ast
import os
import os.path as osp

from conftest import REPO

PKG = osp.join(REPO, "ptnl")

# What each part of ptnl/ may import (besides itself). Every module of ptnl/ is in a part.
ALLOWED = {
    "engine": set(),
    "registry": set(),
    "io": set(),
    "compat": {"engine"},
    "rules": set(),  # value rules of config keys
    "config": {"losses", "rules"},  # the losses' options are declared next to each loss (torch-free module)
    "pseudo": set(),
    "losses": {"registry", "rules"},
    "selection": set(),
    "clip": {"compat", "io", "registry", "engine"},
    "noise": {"clip", "compat", "io", "registry", "engine"},
    "data": {"noise", "clip", "compat", "config", "io", "registry", "engine"},
    "runs": {"io", "config"},  # run identity: the keys' defaults (ptnl.config, torch-free)
    "report": {"runs", "io", "registry"},
    "sweep": {"runs", "io", "registry", "losses"},  # group members' own keys: the losses' options
    "pocket": {"data", "clip", "io", "registry", "compat", "engine"},
    "plugins": {"pocket", "io"},  # io.plugins: the user's files, loaded torch-free by the sweep too
    "trainers": {"plugins", "data", "noise", "clip", "losses", "runs", "pseudo", "selection", "compat", "config",
                 "io", "registry", "engine"},
}
ALLOWED["report"].add("plugins")  # python -m ptnl.report loads PTNL_PLUGINS (figure kinds), only when set
ALLOWED["noise"].add("runs")  # python -m ptnl.noise export reads a run folder's noise.json / results.json
# the run's shell (train.py: command line, config setup, grouping entry, exit handling): above the trainers
ALLOWED["cli"] = ALLOWED["trainers"] | {"trainers"}
# the tools that read finished runs (python -m ptnl.export, python -m ptnl.interpret): above the trainers
ALLOWED["export"] = ALLOWED["trainers"] | {"trainers"}
ALLOWED["interpret"] = ALLOWED["export"] | {"export"}
ALLOWED["errors"] = set()  # ptnl/errors.py: the user-error classes, importable from every layer but the engine
for _part_name, _deps in ALLOWED.items():
    if _part_name not in ("engine", "errors"):
        _deps.add("errors")


def package_modules():
    """{module name: file} of every module of ptnl/."""
    mods = {}
    for dirpath, dirnames, files in os.walk(PKG):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
        for f in files:
            if f.endswith(".py"):
                rel = osp.relpath(osp.join(dirpath, f), REPO)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                mods[".".join(rel)] = osp.join(dirpath, f)
    return mods


def imports_of(name, path, mods):
    """The ptnl modules ``name`` imports anywhere in its file (functions included)."""
    is_pkg = path.endswith("__init__.py")
    out = set()

    def resolve(target):
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target

    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ptnl":
                    out.add(resolve(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "ptnl":
                continue
            for alias in node.names:
                full = base + "." + alias.name
                out.add(full if full in mods else resolve(base))
    out.discard(name)
    out.discard("")
    return out


def graph():
    mods = package_modules()
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def find_cycle(g):
    """A list of modules forming a cycle, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_graph_sees_imports_inside_functions():
    g = graph()
    assert "ptnl.noise.confusion" in g["ptnl.noise.label"]  # imported inside label_training_set
    assert "ptnl.pocket.pretrain" in g["ptnl.pocket.builder"]  # imported inside _build_into
    assert "ptnl.clip.text" in g["ptnl.pocket.pretrain"]


def test_finds_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _part(module):
    rest = module.split(".")[1:]
    if not rest:
        return None
    return rest[0]


def test_layers_import_only_downward():
    bad = []
    for module, targets in graph().items():
        part = _part(module)
        if part is None:
            continue
        assert part in ALLOWED, "module {} is in no layer of ALLOWED (tests/test_layers.py)".format(module)
        for t in targets:
            tp = _part(t)
            if tp is not None and tp != part and tp not in ALLOWED[part]:
                bad.append("{} imports {}".format(module, t))
    assert not bad, "imports against the layers: " + "; ".join(sorted(bad))


def test_engine_imports_nothing_else_of_ptnl():
    for module, targets in graph().items():
        if module.startswith("ptnl.engine"):
            assert all(t.startswith("ptnl.engine") for t in targets), (module, targets)
