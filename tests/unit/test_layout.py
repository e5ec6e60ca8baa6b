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


def resolved_imports(path: Path, tree: ast.AST) -> set[str]:
    """Every module a file imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set(absolute_imports(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            names.add(f"{base}.{node.module}" if node.module else base)
    return names


def test_the_step_engine_never_imports_the_pipeline_engine_and_its_policy_is_plain_python():
    for path, tree in modules("services/core/engine"):
        imports = resolved_imports(path, tree)
        assert "services.core.work.pipeline" not in imports, path
    policy = ROOT / "services/core/engine/scheduler.py"
    imports = resolved_imports(policy, ast.parse(policy.read_text()))
    assert not {n for n in imports if n.startswith(("services", "torch", "diffusers", "numpy"))}, imports


def test_the_engine_interface_and_the_queue_import_no_engine():
    for name in ("engines", "queue", "device", "estimate", "metrics"):
        path = ROOT / f"services/core/work/{name}.py"
        imports = resolved_imports(path, ast.parse(path.read_text()))
        bad = {n for n in imports if n.startswith(("services.core.engine", "services.core.work.pipeline"))}
        assert not bad, f"{path} imports {bad}"
