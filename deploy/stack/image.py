"""The CPU image, built with no container registry: a Debian base made here, torch from the host.

1. The base: Debian bookworm (python3 3.11, python3-venv, ca-certificates) made by mmdebstrap from
   Debian's packages and imported with `docker import`. Kept, and remade only when its recipe changes.
2. The build inputs in deploy/local (git-ignored): the torch wheel the host's pip resolves (a CPU
   build here) and the CA certificates added to this host (/usr/local/share/ca-certificates), which
   a TLS-inspecting proxy needs trusted for the build's pip downloads. The build uses them only
   when present.
3. `docker build` of deploy/Dockerfile with the base as BASE_IMAGE; the layer cache makes a rebuild
   with nothing changed take seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .engine import Engine, EngineError

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"
BASE_IMAGE = "imagegen-debian:bookworm"
CPU_IMAGE = os.environ.get("IMAGEGEN_IMAGE", "imagegen:cpu")
# The torch the CPU image gets: what `make setup` installs here, resolved by the host's pip.
TORCH_SPEC = os.environ.get("IMAGEGEN_TORCH_SPEC", "torch==2.13.0")
SUITE = "bookworm"
PACKAGES = ["python3", "python3-venv", "ca-certificates"]
# The base's Python: the torch wheel must be built for it.
PYTHON_VERSION = "3.11"
# What an imported tarball lacks: an environment. No documentation, manuals or translations.
IMPORT_CHANGES = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"]
DPKG_EXCLUDES = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"]
RECIPE_LABEL = "org.imagegen.base-recipe"
LOCAL_CA = Path("/usr/local/share/ca-certificates")


def recipe() -> str:
    text = repr((SUITE, PACKAGES, IMPORT_CHANGES, DPKG_EXCLUDES))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_base(engine: Engine, log=print) -> None:
    have = engine.docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}',
                         BASE_IMAGE, check=False)
    if have.returncode == 0 and have.stdout.strip() == recipe():
        return
    if shutil.which("mmdebstrap") is None:
        raise EngineError("the CPU base is made with mmdebstrap: `make docker-tools` (or apt-get install mmdebstrap)")
    log(f"making the {BASE_IMAGE} base with mmdebstrap (about a minute)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imagegen-base-") as tmp:
        tarball = Path(tmp) / "base.tar"
        command = ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--quiet",
                   "--aptopt=Acquire::Retries \"3\"",
                   *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES), SUITE, str(tarball)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise EngineError(f"mmdebstrap failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        changes = [a for c in [*IMPORT_CHANGES, f"LABEL {RECIPE_LABEL}={recipe()}"] for a in ("--change", c)]
        engine.docker("import", *changes, str(tarball), BASE_IMAGE, timeout=600)
    log(f"{BASE_IMAGE} made in {time.monotonic() - started:.0f} s")


def prepare_inputs(torch_spec: str, log=print) -> None:
    """torch's wheel for the base's Python, and this host's added CA certificates, into deploy/local."""
    wheels = LOCAL / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name = torch_spec.split("==")[0]
    version = torch_spec.split("==")[1] if "==" in torch_spec else ""
    present = [w for w in wheels.glob(f"{name}-*.whl") if version and w.name.startswith(f"{name}-{version}")]
    if not present:
        for old in wheels.glob("*.whl"):
            old.unlink()
        log(f"fetching {torch_spec} for Python {PYTHON_VERSION} with the host's pip")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", PYTHON_VERSION, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
             "--dest", str(wheels), torch_spec], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise EngineError(f"pip download {torch_spec} failed: {done.stderr.strip()[-2000:]}")
        present = list(wheels.glob("*.whl"))
    # The CUDA build is several GB and needs a GPU: say so rather than build a huge image.
    if not any("+cpu" in w.name for w in present):
        raise EngineError(f"the host's pip resolved {torch_spec} to {[w.name for w in present]}, not a CPU build: "
                          f"point pip at one (e.g. PIP_INDEX_URL=https://download.pytorch.org/whl/cpu) and retry")
    ca = LOCAL / "ca"
    shutil.rmtree(ca, ignore_errors=True)
    certs = sorted(LOCAL_CA.rglob("*.crt")) if LOCAL_CA.is_dir() else []
    if certs:
        ca.mkdir()
        for cert in certs:
            shutil.copyfile(cert, ca / cert.name)


def build(engine: Engine, torch_spec: str, log=print) -> str:
    """The CPU image (tag CPU_IMAGE), from the base and the inputs above; returns its tag."""
    ensure_base(engine, log)
    prepare_inputs(torch_spec, log)
    log(f"building {CPU_IMAGE}")
    started = time.monotonic()
    done = subprocess.run(
        ["docker", "build", "--file", "deploy/Dockerfile", "--tag", CPU_IMAGE, "--network", "host",
         "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "PYTHON=python3", "."],
        cwd=ROOT, env=engine.env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise EngineError(f"docker build failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    log(f"{CPU_IMAGE} built in {time.monotonic() - started:.0f} s")
    return CPU_IMAGE


def size_bytes(engine: Engine, image: str = CPU_IMAGE) -> int:
    return int(engine.docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
