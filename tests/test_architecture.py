"""The import rules of docs/architecture.md, checked over the source with ``ast``.

Every ``import`` of an ``eapkit`` module counts, at module level or inside a function,
under ``TYPE_CHECKING`` or not: a lazy import that runs back up the layers is still a
dependency.  A module may import its own layer and the layers below it; ``eapkit`` never
imports ``tokens`` (the ``token`` command arrives through the ``eapkit.commands`` entry
point) nor ``eapkit.testing`` (test doubles); nothing below the RADIUS fronts opens a
socket; and there is no import circle anywhere in the package.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "eapkit"

# Top to bottom, as in docs/architecture.md: (layer, module prefixes).  The longest
# matching prefix decides a module's layer (``eapkit.methods.base`` is not a method).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "application",
        (
            "eapkit.cli",
            "eapkit.admin",
            "eapkit.helpdesk",
            "eapkit.serve",
            "eapkit.probe",
            "eapkit.loadgen",
            "eapkit.__main__",
            "eapkit.yubico_validation",
            "eapkit.check",
            "eapkit.config_schema",
            "eapkit.crl_reload",
            "eapkit.radsec_config",
            "eapkit.audit",
            "eapkit.audit_html",
            "eapkit.audit_command",
            "eapkit.syslog5424",
            "eapkit.profiles",
            "eapkit.device_commands",
            "eapkit.teap_config",
        ),
    ),
    ("bridge", ("eapkit.bridge",)),
    ("radius", ("eapkit.radius",)),
    ("integrations", ("eapkit.integrations",)),
    (
        "authz",
        ("eapkit.authz", "eapkit.second_factor", "eapkit.bypass", "eapkit.reset", "eapkit.devices"),
    ),
    ("directory", ("eapkit.directory", "eapkit.passwords", "eapkit.policy")),
    ("catalog", ("eapkit.catalog", "eapkit.loopback")),
    ("methods", ("eapkit.methods",)),
    ("session", ("eapkit.session",)),
    ("tlsio", ("eapkit.tlsio", "eapkit.pki")),
    ("method interface", ("eapkit.methods.base",)),
    ("verify", ("eapkit.verify",)),
    ("store", ("eapkit.store",)),
    ("crypto", ("eapkit.crypto",)),
    ("codecs", ("eapkit.packet", "eapkit.diameter", "eapkit.eap_tlv", "eapkit.teap_tlv")),
    (
        "foundation",
        ("eapkit.errors", "eapkit.rand", "eapkit.credentials", "eapkit.private_files", "eapkit"),
    ),
]
TESTING = "eapkit.testing"  # test doubles: may import anything, imported by nothing
# Standard-library modules that open sockets or run event loops and processes: only the
# application layer, the bridge and the RADIUS fronts may use them.
SOCKET_MODULES = frozenset(
    {"socket", "asyncio", "selectors", "socketserver", "http.server", "http.client", "subprocess"}
)
MAY_OPEN_SOCKETS = frozenset({"application", "bridge", "radius"})


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The eapkit module an imported name lives in (``eapkit.radius.core.Reply`` ->
    ``eapkit.radius.core``)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports() -> list[Import]:
    found: list[Import] = []
    for source, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            found += [Import(source, name, getattr(node, "lineno", 0)) for name in names]
    return found


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = prefix != "eapkit" and module.startswith(prefix + ".")  # not all of it
            if (module == prefix or below) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return rank


def internal_edges() -> set[tuple[str, str, int]]:
    edges = set()
    for imp in imports():
        if not imp.target.startswith("eapkit"):
            continue
        target = _resolve(imp.target)
        if target is not None and target != imp.source:
            edges.add((imp.source, target, imp.line))
    return edges


def test_every_module_has_a_layer() -> None:
    for module in modules():
        if module != TESTING and not module.startswith(TESTING + "."):
            layer_of(module)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for source, target, line in sorted(internal_edges()):
        if source.startswith(TESTING) or target.startswith(TESTING):
            continue
        if layer_of(target) < layer_of(source):
            wrong.append(
                f"{source}:{line} imports {target} "
                f"({LAYERS[layer_of(source)][0]} -> {LAYERS[layer_of(target)][0]})"
            )
    assert not wrong, "imports running up the layers:\n" + "\n".join(wrong)


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_nothing_imports_the_test_doubles_or_tokens() -> None:
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in imports()
        if _is(imp.target, "tokens") or (_is(imp.target, TESTING) and not _is(imp.source, TESTING))
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_below_the_fronts_opens_a_socket() -> None:
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in imports()
        if imp.target in SOCKET_MODULES
        and not imp.source.startswith(TESTING)
        and LAYERS[layer_of(imp.source)][0] not in MAY_OPEN_SOCKETS
    ]
    assert not wrong, "sockets below the RADIUS fronts:\n" + "\n".join(wrong)


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {}
    for source, target, _ in internal_edges():
        graph.setdefault(source, set()).add(target)
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    circles: list[list[str]] = []
    counter = 0
    for root in sorted(modules()):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("eapkit.methods.ttls", "eapkit.serve", False),
        ("eapkit.radius.core", "eapkit.directory.scope", True),
        ("eapkit.methods.base", "eapkit.methods.ttls", False),
        ("eapkit.methods.ttls", "eapkit.methods.base", True),
        ("eapkit.tlsio.engine", "eapkit.session", False),
    ],
)
def test_the_rule_itself(source: str, target: str, allowed: bool) -> None:
    """The rank comparison says what docs/architecture.md says for a few known pairs."""
    assert (layer_of(target) >= layer_of(source)) is allowed
