"""The Docker engine the stack runs on: the one already running, or a private dockerd started here.

A private engine has its own data root, exec root and socket (under /var/lib and /run, so it never
touches a system engine's state), no default bridge and no iptables rules: compose makes its own
network, builds use the host's network, and published ports go through docker-proxy. It is started
only as root, from Debian's docker.io, and `stop()` ends it and waits until its processes are gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Fixed places, so `make stack` and `make stack-down` (two processes) find the same engine, and its
# image and layer cache survives between runs.
DATA_ROOT = Path(os.environ.get("IMAGEGEN_DOCKER_DATA", "/var/lib/imagegen-docker"))
RUN_DIR = Path(os.environ.get("IMAGEGEN_DOCKER_RUN", "/run/imagegen-docker"))
SOCKET = RUN_DIR / "docker.sock"
PIDFILE = RUN_DIR / "dockerd.pid"
LOG = DATA_ROOT / "dockerd.log"


class EngineError(RuntimeError):
    """No Docker engine can be used; the message says what to do."""


@dataclass
class Engine:
    env: dict[str, str]  # the environment docker and compose commands run with (DOCKER_HOST)
    started_here: bool  # this process started it, so it stops it
    pid: int | None = None

    def docker(self, *args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and done.returncode != 0:
            raise EngineError(f"docker {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done

    def stop(self) -> None:
        """End a private engine started here (its containerd with it); any other engine is left alone."""
        if self.started_here and self.pid:
            stop_private(self.pid)


def answers(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], env=env, capture_output=True,
                              timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def private_env() -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}


def find_or_start(timeout: float = 60) -> Engine:
    """The engine the environment names (DOCKER_HOST, or the default socket) if it answers; else a
    private one already running (`make stack` leaves it up); else, as root, a new private one."""
    if answers(dict(os.environ)):
        return Engine(dict(os.environ), started_here=False)
    if answers(private_env()):
        return Engine(private_env(), started_here=False, pid=private_pid())
    if os.geteuid() != 0:
        raise EngineError("no Docker engine answers (`docker info` failed): start one (or set DOCKER_HOST), or run "
                          "as root so that a private dockerd is started from Debian's docker.io")
    if shutil.which("dockerd") is None:
        raise EngineError("dockerd is not installed: `make docker-tools` installs Debian's docker.io")
    return start_private(timeout)


def private_pid() -> int | None:
    try:
        return int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None


def start_private(timeout: float) -> Engine:
    stale = private_pid()
    if stale is not None and _alive(stale):
        stop_private(stale)  # a private engine that no longer answers: start afresh
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    PIDFILE.unlink(missing_ok=True)
    SOCKET.unlink(missing_ok=True)
    with open(LOG, "ab") as log:
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(DATA_ROOT / "data"), "--exec-root", str(RUN_DIR / "exec"),
             "--host", f"unix://{SOCKET}", "--pidfile", str(PIDFILE),
             # Leave the host's firewall and any other engine's docker0 alone.
             "--iptables=false", "--ip-masq=false", "--bridge=none"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not answers(private_env()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = LOG.read_text(errors="replace")[-2000:] if LOG.exists() else ""
            raise EngineError(f"the private dockerd did not start (log {LOG}):\n{tail}")
        time.sleep(0.5)
    return Engine(private_env(), started_here=True, pid=proc.pid)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def stop_private(pid: int, timeout: float = 60) -> None:
    """SIGTERM (dockerd stops its containers and its containerd), then SIGKILL for what is left."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.2)
    for left in {pid, *private_processes()}:
        try:
            os.kill(left, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)
    # dockerd leaves its default network namespace mounted in its exec root.
    for mount in private_mounts():
        subprocess.run(["umount", "--lazy", mount], capture_output=True)
    if not private_mounts():
        shutil.rmtree(RUN_DIR, ignore_errors=True)  # sockets and state of a run that is over


def private_mounts() -> list[str]:
    """Mounts under the private engine's folders (namespaces, overlay layers), deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    ours = [m for m in mounts if m.startswith((f"{RUN_DIR}/", f"{DATA_ROOT}/"))]
    return sorted(ours, key=len, reverse=True)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent reaps it


ENGINE_PROGRAMS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy", "runc")


def private_processes() -> list[int]:
    """The private engine's processes (dockerd, its containerd, container shims, port proxies): engine
    programs whose command lines name its run folder."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ours = str(RUN_DIR).encode() in (proc / "cmdline").read_bytes()
            if ours and (proc / "comm").read_text().strip() in ENGINE_PROGRAMS and _alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue  # ended while we looked
    return found
