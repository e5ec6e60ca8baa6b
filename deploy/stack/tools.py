"""The programs the stack needs, installed from Debian's packages (as root) when missing.

Only what is missing is installed: a machine with Docker's own packages (docker-ce, the compose
plugin) keeps them; Debian's docker.io would conflict with docker-ce.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .engine import EngineError, answers


def compose_command(env: dict[str, str] | None = None) -> list[str]:
    """Compose v2 (`docker compose`) when the plugin is there, else docker-compose 1.29."""
    env = env or dict(os.environ)
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], env=env,
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise EngineError("neither `docker compose` nor docker-compose is installed: `make docker-tools`")


def missing_packages() -> list[str]:
    missing = []
    if shutil.which("docker") is None or (shutil.which("dockerd") is None and not answers(dict(os.environ))):
        missing.append("docker.io")
    # docker-compose 1.29 even beside Compose v2: the tests check the compose files read in both.
    if shutil.which("docker-compose") is None:
        missing.append("docker-compose")
    if shutil.which("mmdebstrap") is None:
        missing.append("mmdebstrap")
    return missing


def ensure() -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise EngineError(f"the container tests need {', '.join(missing)}: sudo apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # docker.io's install would start the system's dockerd and leave it running: a policy-rc.d that
    # refuses service starts (Debian's own mechanism) stops that, for the install only.
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    if added:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise EngineError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
    finally:
        if added:
            policy.unlink(missing_ok=True)
