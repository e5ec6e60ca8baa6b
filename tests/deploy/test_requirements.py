"""Packages installed without their declared dependencies (requirements-nodeps.txt): `make setup` and the
image install them with --no-deps, after requirements.txt, which holds what they need but torchvision
(declared by spandrel, never installed: it would bring another torch)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]


def pinned(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = re.split(r"(==|>=)", line, maxsplit=1)
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_no_deps_packages_are_installed_with_no_deps_by_make_and_the_image():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("$(VENV)/.installed:"):].split("\n\n")[0]
    assert "requirements-nodeps.txt" in recipe.split("\n")[0]  # a change reinstalls
    assert "pip install --quiet --no-deps -r requirements-nodeps.txt" in recipe
    assert recipe.index("requirements-dev.txt\n") < recipe.index("--no-deps")  # after the rest
    parser = DockerfileParser(str(ROOT / "deploy" / "Dockerfile"))
    run = " ".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    assert "pip install --quiet --no-deps -r /tmp/requirements-nodeps.txt" in run
    assert run.index("-r /tmp/requirements.txt") < run.index("requirements-nodeps.txt")
    copies = [i["value"] for i in parser.structure if i["instruction"] == "COPY"]
    assert any("requirements-nodeps.txt" in c for c in copies)
    assert "!requirements-nodeps.txt" in (ROOT / ".dockerignore").read_text().split("\n")


def test_what_the_no_deps_packages_need_is_in_requirements_but_torchvision():
    nodeps, runtime = pinned(ROOT / "requirements-nodeps.txt"), pinned(ROOT / "requirements.txt")
    assert nodeps == {"spandrel": "0.4.2"}
    assert not set(nodeps) & set(runtime) and "torchvision" not in runtime
    for name in nodeps:
        assert metadata.version(name) == nodeps[name]  # the installed one is the pinned one
        needs = {re.split(r"[ ;<>=!~\[]", r)[0].lower().replace("_", "-") for r in metadata.requires(name) or []}
        # torch: requirements.txt's range; typing-extensions, numpy and safetensors: torch's and diffusers'.
        missing = needs - set(runtime) - {"torchvision", "typing-extensions", "numpy", "safetensors"}
        assert not missing, f"{name} needs {missing}: pin them in requirements.txt"
    assert runtime["einops"] == metadata.version("einops")
