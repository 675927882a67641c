"""The package's shape: no import cycle, no private name crossing modules, short modules.

Every module of ``callsort/`` is read with :mod:`ast` (nothing is imported), its
imports collected wherever they stand (module level, inside functions, under
``TYPE_CHECKING``), and the graph among callsort's own modules checked.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import callsort

PACKAGE = Path(callsort.__file__).parent
MAX_LINES = 500


@dataclass
class Module:
    name: str
    path: Path
    imports: dict[str, int] = field(default_factory=dict)  # callsort module -> first line
    private: list[str] = field(default_factory=list)  # "line N: what"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def read_package() -> dict[str, Module]:
    modules = {module_name(p): Module(module_name(p), p) for p in sorted(PACKAGE.rglob("*.py"))}
    for module in modules.values():
        scan(module, modules)
    return modules


def scan(module: Module, modules: dict[str, Module]) -> None:
    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))
    is_package = module.path.name == "__init__.py"
    package = module.name if is_package else module.name.rpartition(".")[0]
    bound: dict[str, str] = {}  # local name -> the callsort module it names

    def depend(target: str, line: int) -> None:
        if target != module.name:
            module.imports.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "callsort":
                    continue
                depend(alias.name, node.lineno)
                if is_private(alias.name.rpartition(".")[2]):
                    module.private.append(f"line {node.lineno}: import {alias.name}")
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound["callsort"] = "callsort"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] != "callsort":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # `from callsort.x import y` where y is a module
                    depend(submodule, node.lineno)
                    bound[alias.asname or alias.name] = submodule
                else:
                    depend(source, node.lineno)
                if is_private(alias.name):
                    module.private.append(f"line {node.lineno}: from {source} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = attribute_chain(node)
            if chain is None or chain[0] not in bound:
                continue
            target, rest = bound[chain[0]], chain[1:]
            while rest and f"{target}.{rest[0]}" in modules:
                target, rest = f"{target}.{rest[0]}", rest[1:]
            if rest and is_private(rest[0]) and target != module.name:
                module.private.append(f"line {node.lineno}: {target}.{rest[0]}")


def attribute_chain(node: ast.Attribute) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when it does not start at a name."""
    chain: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        chain.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    return [current.id, *reversed(chain)]


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component."""
    graph = {name: [t for t in m.imports if t in modules] for name, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [cycle_in(sorted(c), graph) for c in components]


def cycle_in(component: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in graph[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w in members and w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


MODULES = read_package()


def describe(name: str) -> str:
    return str(MODULES[name].path.relative_to(PACKAGE.parent))


def test_the_walk_sees_the_package_and_its_imports():
    assert {"callsort.cli", "callsort.model.classifier", "callsort.settings"} <= set(MODULES)
    # a function-level import counts as much as one at the top
    assert "callsort.features.encoder" in MODULES["callsort.features.spectral"].imports
    assert "callsort.settings" in MODULES["callsort.audio.segment"].imports


def test_no_import_cycle():
    found = cycles(MODULES)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_imported_from_another_module(name):
    private = MODULES[name].private
    assert not private, f"{describe(name)} reaches private names: " + "; ".join(private)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short(name):
    lines = len(MODULES[name].path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{describe(name)} has {lines} lines (at most {MAX_LINES})"


# --- the checks themselves -----------------------------------------------------------------


def scanned(tmp_path: Path, name: str, source: str, others: dict[str, Module]) -> Module:
    path = tmp_path / f"{name.rpartition('.')[2]}.py"
    path.write_text(source, encoding="utf-8")
    module = Module(name, path)
    scan(module, {**others, name: module})
    return module


def test_private_names_are_found_in_every_spelling(tmp_path):
    others = {n: Module(n, Path(n)) for n in ("callsort.audio", "callsort.audio.segment")}
    source = (
        "from callsort.audio.segment import _runs, speech_segments\n"
        "import callsort.audio.segment as seg\n"
        "from callsort.audio import segment\n"
        "def f():\n"
        "    import callsort.audio.segment\n"
        "    return seg._windows, segment._merge_close, callsort.audio.segment._is_steady\n"
        "def g(x):\n"
        "    return x._private, seg.speech_segments, seg.__name__\n"
    )
    module = scanned(tmp_path, "callsort.other", source, others)
    assert module.private == [
        "line 1: from callsort.audio.segment import _runs",
        "line 6: callsort.audio.segment._windows",
        "line 6: callsort.audio.segment._merge_close",
        "line 6: callsort.audio.segment._is_steady",
    ]
    assert set(module.imports) == {"callsort.audio.segment"}


def test_cycles_are_found_through_function_level_imports(tmp_path):
    a = scanned(tmp_path, "callsort.a", "from callsort.b import x\n", {})
    b = scanned(tmp_path, "callsort.b", "def f():\n    from callsort.c import y\n", {})
    c = scanned(tmp_path, "callsort.c", "import callsort.a\n", {})
    d = scanned(tmp_path, "callsort.d", "from callsort.a import z\n", {})
    found = cycles({m.name: m for m in (a, b, c, d)})
    assert found == [["callsort.a", "callsort.b", "callsort.c", "callsort.a"]]


# --- the classifier is a scikit-learn estimator ----------------------------------------------


def small_problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["angry", "calm", "sad"]), 30)
    X = rng.standard_normal((len(y), 6)).astype(np.float32)
    X[:, 0] += 6.0 * (y == "angry") - 6.0 * (y == "sad")
    return X, y


def test_clone_gives_an_unfitted_estimator_with_equal_params():
    from sklearn.base import clone, is_classifier

    from callsort.model.classifier import EmotionClassifier

    X, y = small_problem()
    params = {"n_estimators": 40, "params": {"num_leaves": 7}, "classes": ("sad", "calm", "angry")}
    fitted = EmotionClassifier(**params, temperature=1.5).fit(X, y)
    copy = clone(fitted)
    assert is_classifier(copy)
    assert copy.get_params() == fitted.get_params()
    assert copy.get_params()["params"] is not fitted.get_params()["params"]  # a deep copy
    assert not any(k.endswith("_") for k in vars(copy))
    refitted = copy.fit(X, y)
    np.testing.assert_array_equal(refitted.predict_proba(X), fitted.predict_proba(X))
    assert list(refitted.classes_) == ["sad", "calm", "angry"]
    assert refitted.score(X, y) == fitted.score(X, y) > 0.9  # ClassifierMixin's accuracy


def test_set_params_changes_what_a_fit_does():
    from callsort.model.classifier import EmotionClassifier

    X, y = small_problem()
    classifier = EmotionClassifier(n_estimators=40)
    assert classifier.set_params(temperature=3.0, n_estimators=20) is classifier
    assert classifier.get_params()["temperature"] == 3.0
    assert classifier.fit(X, y).booster_.num_trees() == 20 * 3  # rounds x classes
    with pytest.raises(ValueError, match="Invalid parameter"):
        classifier.set_params(trees=10)


def test_check_is_fitted_tells_fitted_from_unfitted():
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from callsort.model.classifier import EmotionClassifier

    X, y = small_problem()
    unfitted = EmotionClassifier(n_estimators=20)
    with pytest.raises(NotFittedError):
        check_is_fitted(unfitted)
    with pytest.raises(NotFittedError):
        unfitted.predict_proba(X)
    check_is_fitted(unfitted.fit(X, y))
