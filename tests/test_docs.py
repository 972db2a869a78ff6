"""The walkthrough's pointers stay true: every ``file.py:Name`` or ``file.py:Class.method`` it
names exists, and the README links it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
POINTER = re.compile(r"`((?:tests/|relay/)?[a-z0-9_/]+\.py):([A-Za-z_][A-Za-z0-9_.]*)`")


def _defined(path: Path) -> set[str]:
    """Top-level names, and ``Class.member`` for members of top-level classes."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(f"{node.name}.{item.name}")
    return names


def _resolve(file: str) -> Path:
    if file.startswith(("tests/", "relay/")):
        return ROOT / file
    return ROOT / "relay" / file


def test_every_pointer_in_the_walkthrough_names_real_code() -> None:
    text = WALKTHROUGH.read_text()
    pointers = POINTER.findall(text)
    assert len(pointers) >= 60
    last_class: dict[str, str] = {}
    for file, name in pointers:
        path = _resolve(file)
        assert path.exists(), file
        defined = _defined(path)
        if name in defined:
            if "." in name:
                last_class[file] = name.split(".")[0]
            continue
        # "ClientConnection._read_head" written once, then "_on_event" in the same sentence
        owner = last_class.get(file)
        assert owner is not None and f"{owner}.{name}" in defined, f"{file}:{name}"


BARE = re.compile(r"`([A-Z][A-Za-z0-9]+)\.([a-z_][a-z0-9_]*)`")


def test_every_bare_class_member_in_the_walkthrough_exists() -> None:
    """``ClientConnection._read_head`` without its file: the class is found in relay/."""
    members: dict[str, set[str]] = {}
    for path in (ROOT / "relay").rglob("*.py"):
        for name in _defined(path):
            if "." in name:
                cls, member = name.split(".")
                members.setdefault(cls, set()).add(member)
    found = BARE.findall(WALKTHROUGH.read_text())
    assert len(found) >= 20
    for cls, member in found:
        if cls in members:
            assert member in members[cls], f"{cls}.{member}"


def test_the_readme_links_the_walkthrough() -> None:
    assert "(docs/walkthrough.md)" in (ROOT / "README.md").read_text()


def test_the_readme_is_a_guide_that_links_the_reference_and_the_mock() -> None:
    """Flag tables, limits, metrics and the mock's headers live in docs/, linked."""
    readme = (ROOT / "README.md").read_text()
    assert "(docs/reference.md)" in readme and "(docs/mock.md)" in readme
    assert len(readme.splitlines()) <= 300
    assert "| `--" not in readme  # (no flag table here: docs/reference.md has it)


def test_every_mock_header_is_in_docs_mock() -> None:
    import relay.mock.server

    doc = relay.mock.server.__doc__ or ""
    headers = set(re.findall(r"``(x-mock-[a-z-]+)``", doc))
    assert len(headers) >= 6
    mock = (ROOT / "docs" / "mock.md").read_text()
    for header in headers:
        assert f"`{header}" in mock, header


def test_the_readmes_links_into_docs_name_real_headings() -> None:
    readme = (ROOT / "README.md").read_text()
    reference = (ROOT / "docs" / "reference.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", reference, flags=re.M)}
    links = re.findall(r"\(docs/reference\.md#([a-z0-9-]+)\)", readme)
    assert links
    for link in links:
        assert link in anchors, link


def _module_table() -> dict[str, set[str]]:
    """docs/reference.md's table of modules: each row's first cell (``folder/`` or ``name.py``
    entries) -> the lowercase names in backticks of its job cell (a folder's modules)."""
    text = (ROOT / "docs" / "reference.md").read_text()
    rows = text.split("| folder / module | job |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    table: dict[str, set[str]] = {}
    for row in rows.splitlines():
        first, job = row.strip("|").split("|", 1)
        names = set(re.findall(r"`([a-z][a-z0-9_]*)`", job))
        for entry in re.findall(r"`([^`]+)`", first):
            table[entry] = names
    return table


def test_the_module_table_names_every_module_and_no_other() -> None:
    """The reference's map of relay/ follows the code: every package's row names exactly its
    modules, and every top-level module has a row."""
    table = _module_table()
    package = ROOT / "relay"
    for folder in sorted(p for p in package.iterdir() if (p / "__init__.py").exists()):
        modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        if modules:
            assert table.get(f"{folder.name}/") == modules, folder.name
    top = {p.name for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert top == {entry for entry in table if entry.endswith(".py")}


def test_the_client_connections_state_diagram_names_its_states() -> None:
    """The walkthrough's diagram of a client connection names every ``State`` and no state the
    code does not have (the exchange's, inside ANSWERING, are ``ExchangeState``'s)."""
    from relay.net.client import State
    from relay.net.exchange import ExchangeState

    text = WALKTHROUGH.read_text()
    block = text.split("The client connection (`net/client.py:State`", 1)[1]
    block = block.split("```", 2)[1]
    named = set(re.findall(r"\b[A-Z][A-Z_]{3,}\b", block))
    assert {s.name for s in State} <= named
    assert named <= {s.name for s in State} | {s.name for s in ExchangeState}
