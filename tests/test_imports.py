"""The package's module graph: no import cycle among bytezip's modules, and the archive format parses without
torch, the mixer or the C kernels (so `bytezip list`-like tools and the format's tests stay light)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bytezip"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The bytezip modules that `name` imports at module level (function-level imports are lazy on purpose;
    `if TYPE_CHECKING:` blocks run only for type checkers)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()

    def add(target: str):
        while target and target not in known:      # `from .x import name`: x, or x's package
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    def visit(stmts):
        for node in stmts:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "bytezip":
                        add(a.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] != "bytezip":
                    continue
                for a in node.names:         # `from . import codec` imports the module bytezip.codec
                    add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
            elif isinstance(node, ast.If):
                test = node.test
                if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
    visit(ast.parse(path.read_text()).body)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(n: str):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not state.get(m):
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if not state.get(n):
            found = visit(n)
            if found:
                return found
    return None


def test_the_graph_reads_imports():
    """The walker sees what it must: relative, absolute and `from . import x` imports, at module level."""
    g = graph()
    assert "bytezip.format" in g["bytezip.registry"]
    assert {"bytezip.loading", "bytezip.neural", "bytezip.plain", "bytezip.options"} <= g["bytezip.codec"]
    assert "bytezip.benchmarking" in g["bytezip.bench"] and "bytezip.benchmarking" in g["bytezip.speed"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_speed_does_not_import_bench_even_lazily():
    """Not even inside a function: speed reads what it shares with bench from bytezip.benchmarking (bench
    imports speed, for `bench --speed`, inside its command)."""
    for node in ast.walk(ast.parse((PACKAGE / "speed.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            assert not (node.level == 1 and node.module == "bench") and node.module != "bytezip.bench"
        elif isinstance(node, ast.Import):
            assert all(a.name != "bytezip.bench" for a in node.names)


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    return set(out.stdout.split())


def layouts_import_kernels() -> bool:
    """Whether pcm.py or image.py still import the kernels (before the predictors moved to bytezip.predictors)."""
    g = graph()
    return any("bytezip.kernels" in g.get(m, ()) for m in ("bytezip.pcm", "bytezip.image"))


def test_format_parses_without_torch_mixer_or_kernels():
    loaded = loaded_after("import bytezip.format")
    heavy = {"torch", "bytezip.mixing", "bytezip.exact", "bytezip.codec", "bytezip.neural", "bytezip.model"}
    assert not heavy & loaded, sorted(heavy & loaded)
    if layouts_import_kernels():
        pytest.xfail("pcm.py/image.py still import the kernels (their predictors not yet moved out)")
    assert "bytezip.kernels" not in loaded and "bytezip._kernels" not in loaded


def test_package_and_options_load_no_torch():
    """`import bytezip` and the options load the codec (and torch) only when a coding name is first used."""
    loaded = loaded_after("import bytezip, bytezip.options; bytezip.CodingOptions(lanes=4)")
    assert "torch" not in loaded and "bytezip.codec" not in loaded
    assert "bytezip.codec" in loaded_after("import bytezip; bytezip.compress")
