"""The house rules, checked on the source: imports flow one way and the core never names a mode."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODE_PACKAGES = ("services.txt2img", "services.img2img", "services.inpaint")


def modules(folder: str):
    for path in sorted((ROOT / folder).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def absolute_imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def project_imports(tree: ast.AST) -> set[str]:
    return {n for n in absolute_imports(tree) if n.split(".")[0] in ("services", "gateway_ui", "imagegen")}


def test_the_core_imports_no_mode_client_or_gateway_and_names_no_mode():
    for path, tree in modules("services/core"):
        bad = {n for n in project_imports(tree) if n.startswith((*MODE_PACKAGES, "services.client", "gateway_ui"))}
        assert not bad, f"{path} imports {bad}"
        assert "importlib" not in absolute_imports(tree), f"{path}: no import by string"
        literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
        assert not literals & {"txt2img", "img2img", "inpaint"}, f"{path} branches on a mode's name"


def test_the_client_needs_only_the_contract():
    for path, tree in modules("services/client"):
        bad = {n for n in project_imports(tree) if not n.startswith(("imagegen.v1", "services.client"))}
        assert not bad, f"{path} imports {bad}"
        assert not absolute_imports(tree) & {"torch", "diffusers"}, path


def test_the_gateway_imports_only_the_client_and_the_contract():
    for path, tree in modules("gateway_ui"):
        bad = {n for n in project_imports(tree)
               if not n.startswith(("imagegen.v1", "services.client", "gateway_ui"))}
        assert not bad, f"{path} imports {bad}"


def test_modes_are_passed_in_by_their_main():
    for package in MODE_PACKAGES:
        main = (ROOT / package.replace(".", "/") / "__main__.py").read_text()
        assert "main(MODE)" in main, package
