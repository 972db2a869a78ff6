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
