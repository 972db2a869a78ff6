"""The house rules, checked on the source: layering, sizes, and tests that mirror the modules.

* ``relay/http1/`` is sans-IO: no asyncio, socket or ssl, nothing from the rest of the relay
  but its frozen configuration and its error bodies; h11 (sans-IO itself) only in its request
  reader;
* h11 is imported by exactly two modules, the request reader and the upstream connection
  (the one that speaks to the other side); uvloop by the wiring
  only; certifi by the pool only; the pump (``proxy.py``) and the router never touch asyncio;
* the runtime dependencies are exactly uvloop, h11 and certifi (Redis only in Redis modules);
* no module over 400 lines, no function over 40;
* every module has a test module in the mirrored place.
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


# Modules whose behaviour is tested through another module's tests, and where.
TESTED_ELSEWHERE = {
    "relay.__main__": "tests/test_cli.py (the module entry point)",
    "relay.app": "tests/test_cli.py and tests/e2e (the wiring, through running relays)",
    "relay.http1.messages": "plain data: every test that relays a request",
    "relay.errors": "tests/test_proxy.py (every error body and event)",
    "relay.mock.generate": "tests/mock/test_server.py",
    "relay.mock.events": "tests/mock/test_server.py",
    "relay.config": "tests/test_cli.py",
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
