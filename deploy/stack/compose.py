"""The CPU stack under compose: up (and healthy), the containers, down (and nothing left)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field

from .engine import Engine, EngineError
from .image import CPU_IMAGE, ROOT
from .tools import compose_command

FILES = ["deploy/compose.yaml", "deploy/compose.cpu.yaml"]
SERVICES = ["txt2img", "img2img", "inpaint", "gateway"]
# Where `make stack` publishes, as `make run` serves: the gateway and each mode's gRPC, this host only.
DEFAULT_PUBLISH = {"GATEWAY_PUBLISH": "127.0.0.1:7860", "TXT2IMG_PUBLISH": "127.0.0.1:50051",
                   "IMG2IMG_PUBLISH": "127.0.0.1:50052", "INPAINT_PUBLISH": "127.0.0.1:50053"}
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class Stack:
    engine: Engine
    project: str = "imagegen"
    publish: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PUBLISH))

    @property
    def env(self) -> dict[str, str]:
        return {**self.engine.env, **self.publish, "IMAGEGEN_IMAGE": CPU_IMAGE}

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        command = [*compose_command(self.engine.env), "--project-name", self.project,
                   *(a for f in FILES for a in ("--file", f)), *args]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise EngineError(f"{' '.join(command[-len(args):])} failed ({done.returncode}): {done.stderr[-3000:]}")
        return done

    def up(self, timeout: float = 300) -> None:
        """Start every service from the built image and wait until each container is healthy."""
        # docker-compose 1.29 waits for the modes' health before it starts the gateway (depends_on).
        self.compose("up", "--detach", "--no-build", timeout=timeout)
        self.wait_healthy(SERVICES, timeout)

    def container(self, service: str) -> str:
        ids = self.compose("ps", "--quiet", service).stdout.split()
        if len(ids) != 1:
            raise EngineError(f"expected one {service} container, found {ids}")
        return ids[0]

    def inspect(self, service: str) -> dict:
        return json.loads(self.engine.docker("inspect", self.container(service)).stdout)[0]

    def health(self, service: str) -> str:
        """healthy, unhealthy or starting while it runs; else the container's state (exited, ...)."""
        state = self.inspect(service)["State"]
        return state["Health"]["Status"] if state["Status"] == "running" and state.get("Health") else state["Status"]

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = {s: self.health(s) for s in services}
            if all(state == "healthy" for state in states.values()):
                return
            broken = [s for s, state in states.items() if state in ("unhealthy", "exited", "dead")]
            if broken or time.monotonic() > deadline:
                logs = self.compose("logs", "--no-color", "--tail", "30", *(broken or services), check=False)
                raise EngineError(f"not healthy: {states}\n{logs.stdout[-4000:]}")
            time.sleep(1)

    def down(self) -> None:
        """Remove the containers, the network and the volumes the stack made (the image stays)."""
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)

    def leftovers(self) -> dict[str, list[str]]:
        """Anything of this project's still on the engine: containers, networks, volumes."""
        label = f"label={PROJECT_LABEL}={self.project}"
        found = {
            "containers": self.engine.docker("ps", "--all", "--quiet", "--filter", label).stdout.split(),
            "networks": self.engine.docker("network", "ls", "--quiet", "--filter", label).stdout.split(),
            "volumes": self.engine.docker("volume", "ls", "--quiet", "--filter", label).stdout.split(),
        }
        return {kind: items for kind, items in found.items() if items}
