"""docs/architecture.md's picture of the modules is the package's real import graph.

`python tests/test_architecture.py` rewrites the picture from the imports; the test fails when
the picture is stale or a module belongs to no concern (add it to `CONCERNS`).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = PROJ_ROOT / "barsalign"
DOC = PROJ_ROOT / "docs" / "architecture.md"
START, END = "<!-- import-graph: python tests/test_architecture.py -->", "<!-- /import-graph -->"

CONCERNS = {
    "core": ["__init__", "__main__", "cli", "config", "errors", "outputs", "presets"],
    "labels": ["labelstore", "labeler", "label_quality", "active"],
    "data": ["data"],
    "synthetic data": ["synth"],
    "preprocessing": ["preprocess", "augment", "roi"],
    "modeling": ["modeling"],
    "inference": ["inference"],
    "evaluation": ["evaluation"],
    "export": ["export"],
    "monitor": ["monitor"],
    "tracking": ["run_folder", "tracking", "runs", "registry"],
    "figures and reports": ["viz", "reports", "summary"],
}
"""Each module's concern, by name; a subpackage's modules (`synth.render`) go with it."""


def modules() -> list[str]:
    """The package's modules, dotted below `barsalign` ("preprocess", "synth.render")."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def concern_of(module: str) -> str | None:
    """The module's concern (itself, else its subpackage's), None when it has none."""
    for name in (module, module.split(".")[0]):
        for concern, members in CONCERNS.items():
            if name in members:
                return concern
    return None


def imports() -> dict[str, set[str]]:
    """Which package modules each module imports, at its top or inside functions (typing-only
    imports left out)."""
    known = set(modules())
    graph: dict[str, set[str]] = defaultdict(set)
    for module in known:
        parts = module.split(".")
        is_pkg = (PACKAGE.joinpath(*parts) / "__init__.py").is_file()
        path = PACKAGE.joinpath(*parts) / "__init__.py" if is_pkg else PACKAGE.joinpath(*parts)
        path = path if is_pkg else path.with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {  # `if TYPE_CHECKING:` imports never run
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for n in ast.walk(block)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's own package
                    base = parts if is_pkg else parts[:-1]
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(["barsalign", *base])
                    mod = f"{prefix}.{node.module}" if node.module else prefix
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith("barsalign."):
                    name = target.removeprefix("barsalign.")
                    if name in known and name != module:
                        graph[module].add(name)
    return graph


def node_id(module: str) -> str:
    return "m_" + re.sub(r"\W", "_", module)


def mermaid() -> str:
    """The picture: one box per concern with its modules, an arrow where one concern's modules
    import another's (imports of `core`, which every concern uses, are left out)."""
    mods = modules()
    missing = [m for m in mods if concern_of(m) is None]
    if missing:
        raise AssertionError(f"modules in no concern of tests/test_architecture.py: {missing}")
    lines = ["```mermaid", "flowchart LR"]
    for i, concern in enumerate(CONCERNS):
        members = [m for m in mods if concern_of(m) == concern]
        if not members:
            continue
        lines.append(f'  subgraph c{i}["{concern}"]')
        lines += [f'    {node_id(m)}["{m}"]' for m in members]
        lines.append("  end")
    ids = {c: f"c{i}" for i, c in enumerate(CONCERNS)}
    edges = sorted(
        {
            (concern_of(a), concern_of(b))
            for a, targets in imports().items()
            for b in targets
            if concern_of(a) != concern_of(b) and concern_of(b) != "core"
        },
        key=lambda e: (list(CONCERNS).index(e[0]), list(CONCERNS).index(e[1])),
    )
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in edges]
    lines.append("```")
    return "\n".join(lines)


def block() -> str:
    return f"{START}\n{mermaid()}\n{END}"


def cycles() -> list[list[str]]:
    """Import cycles between modules (function-level imports count), each once."""
    graph, found = imports(), set()
    out = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == path[0]:
                key = frozenset(path)
                if key not in found:
                    found.add(key)
                    out.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return out


def test_the_architecture_picture_is_the_real_import_graph() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert START in text and END in text, f"{DOC} lacks its import-graph block"
    current = text[text.index(START) : text.index(END) + len(END)]
    assert current == block(), "stale picture: run python tests/test_architecture.py"
    for module in modules():
        assert f'["{module}"]' in current, f"{module} is not in the picture"


def test_the_package_has_no_import_cycle() -> None:
    assert cycles() == []


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    new = text[: text.index(START)] + block() + text[text.index(END) + len(END) :]
    DOC.write_text(new, encoding="utf-8")
    print(f"wrote the import graph into {DOC.relative_to(PROJ_ROOT)}", file=sys.stderr)
