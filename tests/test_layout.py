"""The house rules, checked on the source: layering, sizes, and tests that mirror the modules.

* ``relay/http1/`` is sans-IO: no asyncio, socket or ssl, nothing from the rest of the relay
  but its frozen configuration and its error bodies; h11 (sans-IO itself) only in its request
  reader;
* h11 is imported by exactly two modules, the request reader and the upstream connection
  (the one that speaks to the other side); uvloop by the wiring
  only; certifi by the pool only; the pump (``proxy.py``) and the router never touch asyncio;
* the runtime dependencies are exactly uvloop, h11 and certifi (Redis only in Redis modules);
* no module over 400 lines, no function over 40;
* every module has a test module in the mirrored place;
* the import graph of ``relay/`` (``TYPE_CHECKING`` imports included: they are real coupling,
  only deferred) has no circle, and no import runs from a lower floor to a higher one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "relay"
MODULES = sorted(PACKAGE.rglob("*.py"))
RUNTIME = {"h11", "uvloop", "certifi"}
SOCKET_LEVEL = {"asyncio", "socket", "ssl", "selectors", "h11", "uvloop"}


def _name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved."""
    package = _name(path) if path.name == "__init__.py" else _name(path).rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_the_import_parser_resolves_relative_imports() -> None:
    names = imports(PACKAGE / "net" / "upstream.py")
    assert {"h11", "relay.http1.readers", "relay.net.deadlines", "relay.errors"} <= names


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent.name == "http1"], ids=_name)
def test_http1_is_sans_io(path: Path) -> None:
    names = imports(path)
    banned = SOCKET_LEVEL - {"h11"} if path.stem == "request_reader" else SOCKET_LEVEL
    assert not _top(names) & banned, _top(names) & banned
    relay = {n for n in names if n.startswith("relay.")}
    allowed = ("relay.http1", "relay.config", "relay.errors")
    assert all(n.startswith(allowed) for n in relay), relay


def test_h11_uvloop_and_certifi_each_stay_in_their_modules() -> None:
    where = {dep: sorted(_name(p) for p in MODULES if dep in _top(imports(p)))
             for dep in ("h11", "uvloop", "certifi")}
    assert where == {"h11": ["relay.http1.request_reader", "relay.net.upstream"],
                     "uvloop": ["relay.app"], "certifi": ["relay.net.pool"]}


def test_the_pump_and_the_router_are_not_io_code() -> None:
    for module in ("proxy.py", "router.py"):
        assert not _top(imports(PACKAGE / module)) & SOCKET_LEVEL, module


def test_runtime_dependencies_are_uvloop_h11_and_certifi() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in MODULES:
        third_party = _top(imports(path)) - stdlib - {"relay", "__future__"}
        if "redis" in path.name:
            third_party -= {"redis"}
        assert third_party <= RUNTIME, (path, third_party)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_and_functions_stay_small(path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= 400, f"{_name(path)} has {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 40, f"{_name(path)}.{node.name} has {length} lines"


# The floors of the house, lowest first: a module imports from its own floor or the ones below,
# never above. The leaves (ops, the frozen configuration, the error bodies, the demo page's
# files, the package's version) import no other floor: everyone may import them, so a domain
# hands ops its figures (ops/metrics.py's Registry takes callables) instead of ops reading the
# domain. A module's floor is that of its longest listed prefix; "relay" alone is the package.
FLOORS = {
    "relay": 0, "relay.ops": 0, "relay.config": 0, "relay.errors": 0, "relay.web": 0,
    "relay.http1": 1, "relay.auth": 1, "relay.cors": 1, "relay.guard": 1,  # sans-IO
    "relay.net": 2, "relay.redis_link": 2,  # the sockets: client, upstream, pool, Redis
    "relay.channels": 3, "relay.streams": 3, "relay.proxy": 3, "relay.local": 3,
    "relay.mock": 3,  # the domains: what a request is answered with
    "relay.router": 4, "relay.app": 4, "relay.cli": 4, "relay.__main__": 4,  # the wiring
}

# Circles not yet removed (issue 23): this list may only shrink. The test fails on a circle
# not listed here and on a listed one that is gone, so the list stays true.
CIRCLES_NOT_YET_REMOVED: list[set[str]] = []

# Imports to a higher floor not yet removed: the same rule, only shrinks.
UPWARD_NOT_YET_REMOVED: list[tuple[str, str]] = []

# Imports from one domain into another (floor 3), each with why; the same rule: only shrinks.
DOMAINS_IMPORTING_DOMAINS = {
    ("relay.proxy", "relay.streams.registry"): "a relayed request may be resumable",
    ("relay.proxy", "relay.streams.stream"): "a relayed request may be resumable",
}


def import_graph() -> dict[str, set[str]]:
    """Each module of ``relay/`` and the ``relay/`` modules it imports: an imported name is
    taken to the module that defines it (``relay.channels.hub.Hub`` -> ``relay.channels.hub``).
    ``ast.walk`` sees every import statement, inside ``if TYPE_CHECKING:`` and functions too."""
    modules = {_name(path): path for path in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (or a module importing
    itself): each module that can reach itself, with every module it reaches that reaches it."""
    reach = {name: _reachable(graph, name) for name in graph}
    found = {frozenset(m for m in reach[name] if name in reach[m])
             for name in graph if name in reach[name]}
    return sorted((set(c) for c in found), key=sorted)


def floor(module: str) -> int:
    if module == "relay":
        return FLOORS["relay"]
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in FLOORS:
            return FLOORS[".".join(parts[:end])]
    raise AssertionError(f"{module} has no floor in FLOORS: give it one")


def test_the_import_graph_sees_type_checking_imports_and_finds_circles() -> None:
    graph = import_graph()
    assert "relay.net.exchange" in graph["relay.streams.stream"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"a"}, "b": {"a"}}) == [{"a"}]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    assert circles(import_graph()) == sorted(CIRCLES_NOT_YET_REMOVED, key=sorted)


def test_no_import_runs_to_a_higher_floor() -> None:
    upward = sorted((source, target) for source, targets in import_graph().items()
                    for target in targets if floor(target) > floor(source))
    assert upward == UPWARD_NOT_YET_REMOVED


def test_domains_import_one_another_only_where_listed() -> None:
    lateral = {(source, target) for source, targets in import_graph().items()
               for target in targets if floor(source) == floor(target) == 3
               and source.split(".")[:2] != target.split(".")[:2]}
    assert lateral == set(DOMAINS_IMPORTING_DOMAINS)


# Modules whose behaviour is tested through another module's tests, and where.
TESTED_ELSEWHERE = {
    "relay.__main__": "tests/test_cli.py (the module entry point)",
    "relay.app": "tests/test_cli.py and tests/e2e (the wiring, through running relays)",
    "relay.http1.messages": "plain data: every test that relays a request",
    "relay.errors": "tests/test_proxy.py (every error body and event)",
    "relay.mock.generate": "tests/mock/test_server.py",
    "relay.mock.events": "tests/mock/test_server.py",
    "relay.config": "tests/test_cli.py",
    "relay.streams.redis_writer": "tests/streams/test_redis_store.py (the store's writes, read "
                                  "back from Redis)",
}


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__init__.py"], ids=_name)
def test_every_module_has_a_mirrored_test_module(path: Path) -> None:
    name = _name(path)
    if name in TESTED_ELSEWHERE:
        where = TESTED_ELSEWHERE[name].split()[0]
        assert where.endswith(":") or (ROOT / where).exists() or where == "plain", where
        return
    rel = path.relative_to(PACKAGE)
    mirrored = ROOT / "tests" / rel.parent / f"test_{rel.stem}.py"
    assert mirrored.exists(), f"{name}: no {mirrored.relative_to(ROOT)}"


BENCH_MODULES = sorted((ROOT / "bench").rglob("*.py"))


@pytest.mark.parametrize("path", BENCH_MODULES, ids=_name)
def test_bench_modules_and_functions_stay_small(path: Path) -> None:
    """bench/ is a package of small modules too: none over 500 lines, no function over 40, and
    nothing imported from another module's private names (make a shared helper public)."""
    text = path.read_text()
    assert text.count("\n") <= 500, f"{_name(path)} has {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 40, f"{_name(path)}.{node.name} has {length} lines"
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{_name(path)} imports {private} from {node.module}"
