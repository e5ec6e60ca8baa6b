"""The committed generated code is what the committed .proto generates (run `make proto`)."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_is_fresh(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "protos/imagegen/v1/imagegen.proto"],
        cwd=ROOT, check=True,
    )
    for name in ("imagegen_pb2.py", "imagegen_pb2.pyi", "imagegen_pb2_grpc.py"):
        fresh, committed = tmp_path / "imagegen/v1" / name, ROOT / "imagegen/v1" / name
        assert filecmp.cmp(fresh, committed, shallow=False), f"{committed} is stale: run `make proto`"


def test_every_field_is_documented():
    lines = (ROOT / "protos/imagegen/v1/imagegen.proto").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        is_field = stripped.endswith(";") and "=" in stripped and not stripped.startswith(("//", "option", "syntax"))
        in_message = not stripped.startswith(("rpc ", "package "))
        if is_field and in_message and lines[i - 1].strip()[:2] != "//" and "// " not in line:
            undocumented.append(stripped)
    assert not undocumented, undocumented
