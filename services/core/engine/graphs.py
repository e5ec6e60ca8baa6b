"""Compiled UNet calls (--compile): a model's UNet through torch.compile, its calls padded to a few row
counts (buckets) so the graphs are few, known and all made before SERVING.

`CompiledUNet` stands where the step engine calls the UNet (`denoise.unet_step` calls it as it calls the
module). A call goes through the compiled graph when it matches one warmed at load: its rows, padded up
to the next bucket with copies of row 0 (sliced off the output), and the shapes, dtypes and keyword
arguments warm-up used (--compile-sizes, else the default size; SDXL's text-time arguments). Any other
call runs the eager module, the reason logged once at INFO and counted (imagegen_unet_eager_calls): more rows than the
largest bucket, LoRA adapters on the UNet (peft layers change the graph; compiling each set would
recompile while serving), arguments not warmed (ControlNet residuals), another size or prompt length.
A compiled call that still compiles (torch's guards failed: something changed under the graph) is a
recompile: counted (imagegen_unet_recompiles) and warned of.

`CompiledDecode` does the same for the VAE's decode of finished images (imagegen_vae_* metrics), at the
same sizes: images padded up to a bucket, other sizes decoded uncompiled.

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

from .scheduler import bucket_for

log = logging.getLogger(__name__)


# --- buckets: pure arithmetic, unit-tested without torch's compiler (bucket_for: the policy's, shared)
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


class _Graphs:
    """One part's calls (the UNet, the VAE's decode) through its compiled graphs, their rows padded to the
    buckets: counted, with the graphs made while serving (recompiles: counted and warned of) and the
    calls that ran uncompiled, by reason (logged once each). Its metrics are ServiceMetrics'
    `<prefix>_compiled_graphs`, `_compiled_calls`, `_eager_calls` and `_recompiles`."""

    part = ""  # the log's name for it
    prefix = ""  # its metrics' attribute prefix

    def __init__(self, buckets: tuple[int, ...], metrics=None, name: str = ""):
        self.buckets, self.metrics, self.name = tuple(sorted(buckets)), metrics, name
        self.warmed: set = set()  # (bucket, signature of the call's arguments) of every graph made
        self.graphs = 0  # graphs made: one per bucket warmed, plus any recompile
        self.recompiles = 0
        self._told: set[str] = set()  # eager reasons logged already (once each)

    @property
    def largest(self) -> int:
        return self.buckets[-1]

    def _counter(self, what: str):
        return getattr(self.metrics, f"{self.prefix}_{what}")

    def _through_graph(self, rows: int, bucket: int, run):
        """run() (a call through a graph), counted; a graph it had to make is a recompile."""
        before = graphs_made()
        out = run()
        made = graphs_made() - before
        if made:
            self.graphs += made
            self.recompiles += made
            if self.metrics is not None:
                self._counter("recompiles").inc(made)
                self._counter("compiled_graphs").inc(made)
            log.warning("model %s: the compiled %s recompiled while serving (%d graph(s), %d rows in bucket %d, "
                        "%d graphs now): something changed under the warmed graphs", self.name, self.part, made,
                        rows, bucket, self.graphs)
        if self.metrics is not None:
            self._counter("compiled_calls").inc()
        return out

    def _eager(self, reason: str) -> None:
        if self.metrics is not None:
            self._counter("eager_calls").labels(self.metrics.mode, reason.split(" (")[0]).inc()
        if reason not in self._told:
            self._told.add(reason)
            log.info("model %s: %s calls run uncompiled when they have %s", self.name, self.part, reason)

    def _warmed(self, before: int, started: float, latent_size: tuple[int, int]) -> float:
        """Count and log the graphs warm-up made since `before` (graphs_made()); its seconds."""
        made = graphs_made() - before
        self.graphs += made
        seconds = time.monotonic() - started
        if self.metrics is not None:
            self._counter("compiled_graphs").inc(made)
        log.info("model %s: compiled %s warmed: %d graphs in %.1f s (buckets %s rows, latents %dx%d)", self.name,
                 self.part, self.graphs, seconds, ",".join(map(str, self.buckets)), *latent_size)
        return seconds


class CompiledUNet(_Graphs):
    """A UNet's calls through its compiled graphs where warm-up made one, else through the module."""

    part, prefix = "UNet", "unet"

    def __init__(self, unet, buckets: tuple[int, ...], metrics=None, name: str = ""):
        import torch

        super().__init__(buckets, metrics, name)
        self.unet = unet
        self.cuda = unet.device.type == "cuda"
        self.graph = torch.compile(unet, mode=compile_mode(unet.device.type), fullgraph=True, dynamic=False)
        self.warmed_names: set[str] = set()  # the keyword arguments warm-up passed

    def __getattr__(self, name):  # config, dtype, device: the module's
        return getattr(self.unet, name)

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
        noise = self._through_graph(rows, bucket,
                                    lambda: self._run(bucket, sample, timestep, encoder_hidden_states, kwargs)[:rows])
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

    # --- warm-up
    def warm_up(self, latent_size: tuple[int, int], sequence: int = 77, pooled: int | None = None) -> float:
        """Make every bucket's graph at this latent size, prompt length (tokens) and, for SDXL, pooled text
        embedding width (its text-time arguments), as the engine calls it; its seconds."""
        import torch

        unet, started, before = self.unet, time.monotonic(), graphs_made()
        config, dtype, device = unet.config, unet.dtype, unet.device
        with torch.inference_mode():  # as the runner calls: inference tensors, so the guards match it
            for bucket in self.buckets:
                sample = torch.randn(bucket, config.in_channels, *latent_size, dtype=dtype, device=device)
                embeds = torch.randn(bucket, sequence, config.cross_attention_dim, dtype=dtype, device=device)
                timestep = torch.full((bucket,), 999.0, device=device)
                kwargs = text_time_kwargs(config, pooled, bucket, dtype, device)
                self._run(bucket, sample, timestep, embeds, kwargs)
                self.warmed.add((bucket, signature((sample, embeds, kwargs))))
                self.warmed_names.update(argument_names(kwargs))
        return self._warmed(before, started, latent_size)


class CompiledDecode(_Graphs):
    """A VAE's decode (latents to pixels, what denoise.decode calls) through its compiled graphs at the
    size warm-up used, the finished images padded up to a bucket; any other call (another size, more
    images than the largest bucket: hires fix passes, big batches) decodes uncompiled.

    No CUDA graphs here: a decode is a few large convolutions per image, where launch cost is small,
    and the float16 VAEs that decode upcast (denoise's `decoding`) swap their weights' memory at every
    call, which a graph would have to record again."""

    part, prefix = "VAE decode", "vae"

    def __init__(self, vae, buckets: tuple[int, ...], metrics=None, name: str = ""):
        import torch

        super().__init__(buckets, metrics, name)
        self.vae = vae
        self.graph = torch.compile(self._decode, mode="default", fullgraph=True, dynamic=False)

    def _decode(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]

    def __call__(self, latents):
        rows = latents.shape[0]
        reason = self.eager_reason(latents)
        if reason is not None:
            self._eager(reason)
            return self._decode(latents)
        bucket = bucket_for(rows, self.buckets)
        return self._through_graph(rows, bucket, lambda: self.graph(pad_rows(latents, bucket))[:rows])

    def eager_reason(self, latents) -> str | None:
        """Why this decode cannot use a warmed graph (None: it can)."""
        bucket = bucket_for(latents.shape[0], self.buckets)
        if bucket is None:
            return f"more images than the largest compiled bucket ({self.largest})"
        if (bucket, signature(latents)) in self.warmed:
            return None
        return f"a latent size no graph was warmed with ({'x'.join(map(str, latents.shape[2:]))})"

    def warm_up(self, latent_size: tuple[int, int]) -> float:
        """Make every bucket's graph at this latent size, in the precision decoding runs in; its seconds."""
        import torch

        from .denoise import decoding

        vae, started, before = self.vae, time.monotonic(), graphs_made()
        with torch.inference_mode(), decoding(vae):
            for bucket in self.buckets:
                latents = torch.randn(bucket, vae.config.latent_channels, *latent_size, dtype=vae.dtype,
                                      device=vae.device)
                self.graph(latents)
                self.warmed.add((bucket, signature(latents)))
        return self._warmed(before, started, latent_size)


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


def compile_model(pipe, name: str, config, metrics=None) -> tuple[CompiledUNet, CompiledDecode]:
    """A loaded model's UNet prepared, compiled and warmed at the service's compiled sizes (--compile-sizes,
    else the default size), and its VAE's decode compiled and warmed likewise: what the step engine
    calls in their place. `config`: the service's ServiceConfig."""
    import torch._dynamo.config

    use_cache_dir(config.compile_cache_dir or config.cache_dir / "compile")
    sizes = config.compile_sizes or ((config.defaults.size, config.defaults.size),)
    # Every UNet of one class shares dynamo's cache of its forward (every VAE, of its decode): room for
    # each bucket and size of the pool's models, resident or held in host memory (past the limit dynamo
    # would run the rest uncompiled).
    room = len(config.compile_buckets) * len(sizes) * (config.max_loaded + 8)  # and models back from host memory
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, room)
    unet = pipe.unet
    done = prepare(unet, fuse_qkv=config.lora_dir is None)
    compiled = CompiledUNet(unet, config.compile_buckets, metrics, name)
    decode = CompiledDecode(pipe.vae, config.compile_buckets, metrics, name)
    scale = getattr(pipe, "vae_scale_factor", 8)
    encoder_2 = getattr(pipe, "text_encoder_2", None)
    pooled = encoder_2.config.projection_dim if encoder_2 is not None else None
    log.info("model %s: compiling its UNet (%s; %s) and VAE decode, buckets %s rows at %s", name, done,
             compile_mode(unet.device.type), ",".join(map(str, compiled.buckets)),
             ", ".join(f"{width}x{height}" for width, height in sizes))
    for width, height in sizes:
        latent_size = (height // scale, width // scale)
        compiled.warm_up(latent_size, pipe.tokenizer.model_max_length, pooled)
        decode.warm_up(latent_size)
    return compiled, decode
