"""The shape of the code base, checked: no import cycles, no borrowed private names, short modules.

Imports are read from the source with `ast`, lazy ones (inside functions) included,
since a lazy import is still a dependency and a cycle through it is still a cycle;
imports under `if TYPE_CHECKING:` are left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[2] / 'src'
PACKAGE = 'gpufleet'
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob('*.py'))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` blocks."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
            for child in node.body:
                hidden.update(id(n) for n in ast.walk(child))
    return hidden


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ''
    base = module.split('.')
    is_package = MODULES[module].name == '__init__.py'
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return '.'.join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import that can run."""
    tree = ast.parse(MODULES[module].read_text())
    hidden = _type_checking_nodes(tree)
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                submodule = f'{target}.{alias.name}'
                found.append((submodule, None) if submodule in MODULES else (target, alias.name))
    return [(target, name) for target, name in found if target.split('.')[0] == PACKAGE]


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module in MODULES:
        for target, _ in _imports(module):
            if target in MODULES and target != module:
                graph.add_edge(module, target)
    return graph


def _is_package_of(package: str, module: str) -> bool:
    return MODULES[package].name == '__init__.py' and module.startswith(package + '.')


def test_the_import_graph_has_no_cycles() -> None:
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle of ideas.
    graph.remove_edges_from([(a, b) for a, b in graph.edges if _is_package_of(a, b)])
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, 'import cycles:\n' + '\n'.join(' <-> '.join(c) for c in cycles)


def test_no_module_imports_another_modules_private_name() -> None:
    borrowed = [
        f'{module} imports {target}.{name}'
        for module in MODULES
        for target, name in _imports(module)
        if name and name.startswith('_') and not name.startswith('__') and target != module
    ]
    assert not borrowed, '\n'.join(borrowed)


@pytest.mark.parametrize('module', sorted(MODULES))
def test_no_module_passes_the_line_limit(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f'{module} has {lines} lines'
