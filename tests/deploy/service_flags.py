"""A deployment's environment read as the mode's service reads it (its flag table), so a renamed or
mistyped variable, or a value the service refuses, fails the deployment's test rather than the pod."""

from __future__ import annotations

import importlib


def pool_settings(mode: str, environ: dict) -> tuple:
    """(models_dir, max_loaded, ram_cache_gb) a service of `mode` would start with under `environ`."""
    from services.core.config import build_parser

    mode_object = importlib.import_module(f"services.{mode}.mode").MODE
    parser = build_parser(mode_object, environ)
    known = {flag.env for flag in parser.flags}
    unknown = {name for name in environ if name.startswith("IMAGEGEN_")} - known
    assert not unknown, f"variables the service does not read: {sorted(unknown)}"
    args = parser.read([], environ)
    return str(args.models_dir), args.max_loaded, args.ram_cache_gb


def compile_settings(mode: str, environ: dict) -> tuple:
    """(compile, compile_cache_dir) a service of `mode` would start with under `environ`."""
    from services.core.config import build_parser

    mode_object = importlib.import_module(f"services.{mode}.mode").MODE
    args = build_parser(mode_object, environ).read([], environ)
    return args.compile, str(args.compile_cache_dir) if args.compile_cache_dir else None
