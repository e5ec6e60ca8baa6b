"""Compiled UNet calls (--compile): a model's UNet through torch.compile, its calls padded to a few row
counts (buckets) so the graphs are few, known and all made before SERVING.

`CompiledUNet` stands where the step engine calls the UNet (`denoise.unet_step` calls it as it calls the
module). A call goes through the compiled graph when it matches one warmed at load: its rows, padded up
to the next bucket with copies of row 0 (sliced off the output), and the shapes, dtypes and keyword
arguments warm-up used (the default size; SDXL's text-time arguments). Any other call runs the eager
module, the reason logged once at INFO and counted (imagegen_unet_eager_calls): more rows than the
largest bucket, LoRA adapters on the UNet (peft layers change the graph; compiling each set would
recompile while serving), arguments not warmed (ControlNet residuals), another size or prompt length.
A compiled call that still compiles (torch's guards failed: something changed under the graph) is a
recompile: counted (imagegen_unet_recompiles) and warned of.

On CUDA the graphs are CUDA graphs ("reduce-overhead"): the launch cost of a step goes, and the output
is copied out of the graph's memory before the next replay overwrites it. On CPU, inductor's C++ code.
The compile cache lives on disk (`use_cache_dir`), so a restart compiles from it in seconds.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


# --- buckets: pure arithmetic, unit-tested without torch's compiler
def bucket_for(rows: int, buckets: tuple[int, ...]) -> int | None:
    """The smallest bucket that holds `rows` (buckets ascending), or None when none does."""
    return next((bucket for bucket in buckets if bucket >= rows), None)


def pad_rows(value: Any, bucket: int) -> Any:
    """`value` with every tensor's first dimension padded up to `bucket` rows with copies of its row 0;
    dicts, tuples and lists padded member by member (added_cond_kwargs, ControlNet residual lists)."""
    import torch

    if isinstance(value, torch.Tensor):
        missing = bucket - value.shape[0]
        if missing <= 0:
            return value
        return torch.cat([value, value[:1].expand(missing, *value.shape[1:])])
    if isinstance(value, dict):
        return {key: pad_rows(item, bucket) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(pad_rows(item, bucket) for item in value)
    return value


def signature(value: Any) -> Any:
    """What a compiled graph is specialised on, rows left out: each tensor's other dimensions, dtype and
    device; the nesting of dicts and tuples; other values as they are."""
    import torch

    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape[1:]), value.dtype, value.device)
    if isinstance(value, dict):
        return tuple(sorted((key, signature(item)) for key, item in value.items()))
    if isinstance(value, (tuple, list)):
        return tuple(signature(item) for item in value)
    return value


def argument_names(kwargs: dict, prefix: str = "") -> list[str]:
    """The keyword arguments' names, nested ones as a.b (for the log's reasons)."""
    names = []
    for key, value in kwargs.items():
        if isinstance(value, dict):
            names += argument_names(value, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


# --- torch.compile's settings
def use_cache_dir(folder: Path) -> None:
    """torch.compile's caches (inductor's code and FX graphs, the autograd cache, Triton's kernels) in
    `folder`, so a restart of the service reuses them. Set before anything compiles."""
    import torch._functorch.config
    import torch._inductor.config

    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)  # read when inductor first needs its cache
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True


def compile_mode(device_type: str) -> str:
    """CUDA graphs on CUDA; inductor's default elsewhere (max-autotune would tune for minutes on a CPU)."""
    return "reduce-overhead" if device_type == "cuda" else "default"


def graphs_made() -> int:
    """Graphs dynamo has compiled in this process (every model's, recompiles included)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def prepare(unet, fuse_qkv: bool) -> str:
    """The UNet laid out for compiling: channels_last, and its attention's q, k and v projections fused
    into one matmul where it has them and `fuse_qkv` (LoRAs target the unfused projections: a service
    that may load LoRAs keeps them apart). What was done, for the log."""
    import torch

    unet.to(memory_format=torch.channels_last)
    done = ["channels_last"]
    if fuse_qkv and hasattr(unet, "fuse_qkv_projections"):
        try:
            unet.fuse_qkv_projections()
            done.append("fused QKV projections")
        except ValueError as exc:  # added KV projections (some models): diffusers refuses, left unfused
            done.append(f"QKV left unfused ({exc})")
    else:
        done.append("QKV unfused (LoRAs may load)" if not fuse_qkv else "no QKV fusion for this UNet")
    return ", ".join(done)


class CompiledUNet:
    """A UNet's calls through its compiled graphs where warm-up made one, else through the module."""

    def __init__(self, unet, buckets: tuple[int, ...], metrics=None, name: str = ""):
        import torch

        self.unet, self.buckets, self.metrics, self.name = unet, tuple(sorted(buckets)), metrics, name
        self.cuda = unet.device.type == "cuda"
        self.graph = torch.compile(unet, mode=compile_mode(unet.device.type), fullgraph=True, dynamic=False)
        self.warmed: set = set()  # (bucket, signature of the call's arguments) of every graph made
        self.warmed_names: set[str] = set()  # the keyword arguments warm-up passed
        self.graphs = 0  # graphs made for this UNet: one per bucket warmed, plus any recompile
        self.recompiles = 0
        self._told: set[str] = set()  # eager reasons logged already (once each)

    def __getattr__(self, name):  # config, dtype, device: the module's
        return getattr(self.unet, name)

    @property
    def largest(self) -> int:
        return self.buckets[-1]

    # --- a call
    def __call__(self, sample, timestep, encoder_hidden_states=None, return_dict=False, **kwargs):
        rows = sample.shape[0]
        timestep = self._timesteps(timestep, rows, sample.device)
        reason = self.eager_reason(sample, encoder_hidden_states, kwargs)
        if reason is not None:
            self._eager(reason)
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=return_dict,
                             **kwargs)
        bucket = bucket_for(rows, self.buckets)
        before = graphs_made()
        noise = self._run(bucket, sample, timestep, encoder_hidden_states, kwargs)[:rows]
        made = graphs_made() - before
        if made:
            self.graphs += made
            self.recompiles += made
            if self.metrics is not None:
                self.metrics.unet_recompiles.inc(made)
                self.metrics.compiled_graphs.inc(made)
            log.warning("model %s: the compiled UNet recompiled while serving (%d graph(s), %d rows in bucket %d, "
                        "%d graphs now): something changed under the warmed graphs", self.name, made, rows, bucket,
                        self.graphs)
        if self.metrics is not None:
            self.metrics.unet_compiled_calls.inc()
        return (noise,) if not return_dict else {"sample": noise}

    def eager_reason(self, sample, encoder_hidden_states, kwargs) -> str | None:
        """Why this call cannot use a warmed graph (None: it can)."""
        rows = sample.shape[0]
        bucket = bucket_for(rows, self.buckets)
        if bucket is None:
            return f"more UNet rows than the largest compiled bucket ({self.largest})"
        if getattr(self.unet, "peft_config", None):
            return "LoRA adapters are loaded on the UNet"
        key = (bucket, signature((sample, encoder_hidden_states, kwargs)))
        if key in self.warmed:
            return None
        extra = sorted(set(argument_names(kwargs)) - self.warmed_names)
        if extra:
            return f"UNet arguments no graph was warmed with ({', '.join(extra)})"
        return (f"an input shape no graph was warmed with (latents {tuple(sample.shape[1:])}, prompt "
                f"{tuple(encoder_hidden_states.shape[1:])})")

    def _timesteps(self, timestep, rows: int, device):
        """One float32 timestep per row on the UNet's device: schedulers' timesteps are int64 or float
        (exact in float32), and one dtype keeps one graph for a crowd of schedulers."""
        import torch

        if not isinstance(timestep, torch.Tensor):
            timestep = torch.tensor([timestep])
        return timestep.to(device=device, dtype=torch.float32).reshape(-1).expand(rows).contiguous()

    def _run(self, bucket: int, sample, timestep, encoder_hidden_states, kwargs):
        import torch

        args = pad_rows((sample, timestep, encoder_hidden_states, kwargs), bucket)
        if self.cuda:  # a new replay: the previous call's outputs are no longer read
            torch.compiler.cudagraph_mark_step_begin()
        noise = self.graph(args[0], args[1], encoder_hidden_states=args[2], return_dict=False, **args[3])[0]
        # Out of the CUDA graph's memory, which its next replay overwrites.
        return noise.clone() if self.cuda else noise

    def _eager(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.unet_eager_calls.labels(self.metrics.mode, reason.split(" (")[0]).inc()
        if reason not in self._told:
            self._told.add(reason)
            log.info("model %s: UNet calls run uncompiled when they have %s", self.name, reason)

    # --- warm-up
    def warm_up(self, latent_size: tuple[int, int], sequence: int = 77, pooled: int | None = None) -> float:
        """Make every bucket's graph at this latent size, prompt length (tokens) and, for SDXL, pooled text
        embedding width (its text-time arguments), as the engine calls it; its seconds."""
        import torch

        unet, started = self.unet, time.monotonic()
        config, dtype, device = unet.config, unet.dtype, unet.device
        before = graphs_made()
        with torch.inference_mode():  # as the runner calls: inference tensors, so the guards match it
            for bucket in self.buckets:
                sample = torch.randn(bucket, config.in_channels, *latent_size, dtype=dtype, device=device)
                embeds = torch.randn(bucket, sequence, config.cross_attention_dim, dtype=dtype, device=device)
                timestep = torch.full((bucket,), 999.0, device=device)
                kwargs = text_time_kwargs(config, pooled, bucket, dtype, device)
                self._run(bucket, sample, timestep, embeds, kwargs)
                self.warmed.add((bucket, signature((sample, embeds, kwargs))))
                self.warmed_names.update(argument_names(kwargs))
        self.graphs += graphs_made() - before
        seconds = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.compiled_graphs.inc(graphs_made() - before)
        log.info("model %s: compiled UNet warmed: %d graphs in %.1f s (buckets %s rows, latents %dx%d)", self.name,
                 self.graphs, seconds, ",".join(map(str, self.buckets)), *latent_size)
        return seconds


def text_time_kwargs(config, pooled: int | None, bucket: int, dtype, device) -> dict:
    """SDXL's added_cond_kwargs for a UNet whose config asks for them ("text_time"), shaped as the
    engine's TextTime sends them: the pooled text embedding (`pooled` wide) and the size numbers (6, or
    5 with the aesthetic score: what the projection's input has left); {} for other UNets."""
    import torch

    if getattr(config, "addition_embed_type", None) != "text_time" or pooled is None:
        return {}
    numbers = (config.projection_class_embeddings_input_dim - pooled) // config.addition_time_embed_dim
    return {"added_cond_kwargs": {"text_embeds": torch.randn(bucket, pooled, dtype=dtype, device=device),
                                  "time_ids": torch.zeros(bucket, numbers, dtype=dtype, device=device)}}


def compile_model(pipe, name: str, config, metrics=None) -> CompiledUNet:
    """A loaded model's UNet prepared, compiled and warmed at the service's default size (--compile):
    what the step engine calls in its place. `config`: the service's ServiceConfig."""
    import torch._dynamo.config

    use_cache_dir(config.compile_cache_dir or config.cache_dir / "compile")
    # Every UNet of one class shares dynamo's cache of its forward: room for each bucket of the pool's
    # models, resident or held in host memory (past the limit dynamo would run the rest uncompiled).
    room = len(config.compile_buckets) * (config.max_loaded + 8)  # and models back from host memory
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, room)
    unet = pipe.unet
    done = prepare(unet, fuse_qkv=config.lora_dir is None)
    compiled = CompiledUNet(unet, config.compile_buckets, metrics, name)
    scale = getattr(pipe, "vae_scale_factor", 8)
    side = config.defaults.size // scale
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    pooled = encoder_2.config.projection_dim if encoder_2 is not None else None
    log.info("model %s: compiling its UNet (%s; %s), buckets %s UNet rows at %dx%d", name, done,
             compile_mode(unet.device.type), ",".join(map(str, compiled.buckets)), config.defaults.size,
             config.defaults.size)
    compiled.warm_up((side, side), pipe.tokenizer.model_max_length, pooled)
    return compiled
