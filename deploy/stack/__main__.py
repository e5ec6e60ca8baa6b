"""The CPU stack on this machine, for people and for the tests (`make stack`, `make stack-down`).

    python3 -m deploy.stack tools   # install what is missing of docker.io, docker-compose, mmdebstrap (root)
    python3 -m deploy.stack image   # build the CPU image (imagegen:cpu) when needed
    python3 -m deploy.stack up      # the image, then the stack in the background; prints the URL when healthy
    python3 -m deploy.stack down    # remove what `up` made, and stop the private engine if one runs

Uses the Docker engine that answers; with none, as root, starts a private dockerd that `down` stops.
Needs only the standard library: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import engine as engines
from . import image, tools
from .compose import Stack


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m deploy.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["tools", "image", "up", "down"])
    parser.add_argument("--project", default="imagegen", help="compose project name [imagegen]")
    args = parser.parse_args(argv)
    try:
        if args.command == "tools":
            tools.ensure()
        elif args.command == "down":
            down(args.project)
        else:
            tools.ensure()
            engine = engines.find_or_start()
            started = time.monotonic()
            image.build(engine, image.TORCH_SPEC, log)
            log(f"{image.CPU_IMAGE}: {image.size_bytes(engine) / 1e9:.2f} GB, ready in {time.monotonic() - started:.0f} s")
            if args.command == "up":
                stack = Stack(engine, args.project)
                stack.up()
                print(f"imagegen is up: http://{stack.publish['GATEWAY_PUBLISH']}/ (gRPC: "
                      f"{', '.join(stack.publish[f'{m}_PUBLISH'] for m in ('TXT2IMG', 'IMG2IMG', 'INPAINT'))}); "
                      "`make stack-down` removes it")
    except engines.EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def down(project: str) -> None:
    for env in (None, engines.private_env()):
        engine = engines.Engine(env or dict(engines.os.environ), started_here=False)
        if engines.answers(engine.env):
            stack = Stack(engine, project)
            stack.down()
            if stack.leftovers():
                raise engines.EngineError(f"left behind: {stack.leftovers()}")
    pid = engines.private_pid()
    if pid is not None:
        log("stopping the private Docker engine")
        engines.stop_private(pid)


if __name__ == "__main__":
    sys.exit(main())
