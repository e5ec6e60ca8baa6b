"""Prometheus metrics of one service, served over HTTP by prometheus-client.

imagegen_queue_depth is the one to autoscale on: requests waiting for the engine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class ServiceMetrics:
    def __init__(self, mode: str, queue):
        self.mode = mode
        # A registry per service: several services can live in one process (tests, benchmarks).
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("imagegen_requests", "Finished gRPC calls, by method and status code.",
                                ["mode", "method", "code"], registry=registry)
        self.request_seconds = Histogram("imagegen_request_duration_seconds",
                                         "Time from a call's arrival to its end.", ["mode", "method"],
                                         buckets=_LATENCY_BUCKETS, registry=registry)
        self.queue_wait = Histogram("imagegen_queue_wait_seconds", "Time a request waited for the engine.",
                                    ["mode"], buckets=_LATENCY_BUCKETS, registry=registry).labels(mode)
        self.queue_depth = Gauge("imagegen_queue_depth", "Requests waiting for the engine (scale on this).",
                                 ["mode"], registry=registry).labels(mode)
        self.queue_depth.set_function(lambda: queue.depth)
        self.in_progress = Gauge("imagegen_requests_in_progress", "Generation calls being served now.",
                                 ["mode"], registry=registry).labels(mode)
        self.batch_images = Histogram("imagegen_batch_size", "Images per pipeline call (batching).", ["mode"],
                                      buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=registry).labels(mode)
        self.batch_requests = Histogram("imagegen_batch_requests", "Requests per pipeline call.", ["mode"],
                                        buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=registry).labels(mode)
        self.steps = Counter("imagegen_denoising_steps", "Denoising steps run (all images of a batch at once).",
                             ["mode"], registry=registry).labels(mode)
        self.steps_per_second = Gauge("imagegen_denoising_steps_per_second",
                                      "Denoising steps per second of the last pipeline call.", ["mode"],
                                      registry=registry).labels(mode)
        self.step_rows = Histogram("imagegen_step_rows", "UNet rows per step-engine call (a guided image is two).",
                                   ["mode"], buckets=(1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64),
                                   registry=registry).labels(mode)
        self.step_seconds = Histogram("imagegen_step_seconds", "Time of one step-engine UNet call and its "
                                      "scheduler steps.", ["mode"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                               0.5, 1, 2, 5, 10),
                                      registry=registry).labels(mode)
        self.lora_loads = Counter("imagegen_lora_loads", "LoRA files loaded onto the model (adapter cache misses).",
                                  ["mode"], registry=registry).labels(mode)
        self.model_loads = Counter("imagegen_model_loads", "Models loaded from disk (the model pool's misses).",
                                   ["mode"], registry=registry).labels(mode)
        self.model_switches = Counter("imagegen_model_switches", "Models moved back from host memory to the "
                                      "device.", ["mode"], registry=registry).labels(mode)
        self.model_evictions = Counter("imagegen_model_evictions", "Models moved off the device to make room.",
                                       ["mode"], registry=registry).labels(mode)
        self.model_load_seconds = Histogram("imagegen_model_load_seconds", "Time of one model load from disk.",
                                            ["mode"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
                                            registry=registry).labels(mode)
        self.models_resident = Gauge("imagegen_models_resident", "Models on the device now.", ["mode"],
                                     registry=registry).labels(mode)
        self.images = Counter("imagegen_images_generated", "Images generated.", ["mode"],
                              registry=registry).labels(mode)
        self.images_upscaled = Counter("imagegen_images_upscaled", "Images upscaled (the Upscale RPC).", ["mode"],
                                       registry=registry).labels(mode)
        self.upscale_seconds = Histogram("imagegen_upscale_seconds", "Time of one upscale, queue wait left out.",
                                         ["mode"], buckets=_LATENCY_BUCKETS, registry=registry).labels(mode)
        # --compile (engine/graphs.py): graphs made, calls through them, calls that ran uncompiled and why,
        # and recompiles while serving (none is expected: each one is also a warning in the log).
        self.unet_compiled_graphs = Counter("imagegen_unet_compiled_graphs", "Compiled UNet graphs made (warm-up and "
                                            "recompiles).", ["mode"], registry=registry).labels(mode)
        self.unet_compiled_calls = Counter("imagegen_unet_compiled_calls", "UNet calls through a compiled graph.",
                                           ["mode"], registry=registry).labels(mode)
        self.unet_eager_calls = Counter("imagegen_unet_eager_calls", "UNet calls run uncompiled under --compile, "
                                        "by reason.", ["mode", "reason"], registry=registry)
        self.unet_recompiles = Counter("imagegen_unet_recompiles", "Compiled UNet graphs made while serving (a "
                                       "guard failed).", ["mode"], registry=registry).labels(mode)
        # The same for the VAE's decode of finished images.
        self.vae_compiled_graphs = Counter("imagegen_vae_compiled_graphs", "Compiled VAE decode graphs made "
                                           "(warm-up and recompiles).", ["mode"], registry=registry).labels(mode)
        self.vae_compiled_calls = Counter("imagegen_vae_compiled_calls", "VAE decodes through a compiled graph.",
                                          ["mode"], registry=registry).labels(mode)
        self.vae_eager_calls = Counter("imagegen_vae_eager_calls", "VAE decodes run uncompiled under --compile, "
                                       "by reason.", ["mode", "reason"], registry=registry)
        self.vae_recompiles = Counter("imagegen_vae_recompiles", "Compiled VAE decode graphs made while serving "
                                      "(a guard failed).", ["mode"], registry=registry).labels(mode)
        self.http_server = None

    def observe_batch(self, requests: int, images: int, seconds: float, steps: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_images.observe(images)
        self.images.inc(images)
        if seconds > 0:
            self.steps_per_second.set(steps / seconds)

    def start_http(self, host: str, port: int) -> int:
        """Serve /metrics; returns the port (port 0 picks a free one)."""
        self.http_server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return self.http_server.server_port

    def stop_http(self) -> None:
        if self.http_server is not None:
            self.http_server.shutdown()
            self.http_server.server_close()
