"""--compile over gRPC (inductor on the CPU): the compiled UNet's and VAE decode's images are diffusers'
own pipeline's, a mixed crowd (guidance on and off, several schedulers, several images) runs through
the warmed graphs with no recompile and no call above the largest bucket, and another size, LoRA and
ControlNet requests, which run uncompiled (counted by reason), still get diffusers' own images.

One compiled service for the module: two buckets (2 and 4 rows), the tiny model, two sizes (64 square,
the default, and 96x64), so compiling takes four graphs each for the UNet and the decode. Its compile
cache is the test cache's, so a second run compiles from disk.
The tests run in file order: the LoRA test last, since LoRA layers on the UNet make every later call
uncompiled.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.core.models.presets import ensure_tiny
from tests.conftest import CACHE_DIR, RunningService, request_for
from tests.services.crowds import all_at_once
from tests.services.test_controlnet import diffusers_image as controlnet_image
from tests.services.test_controlnet import folder, pixels, with_units  # noqa: F401 - folder: a fixture
from tests.services.test_loras import diffusers_image as lora_image
from tests.services.test_loras import lora_dir  # noqa: F401 - a fixture

# Compiling from an empty cache takes minutes on a shared 2-core machine (about 6 for the two graphs);
# from the cache on disk, seconds.
pytestmark = pytest.mark.timeout(1500)
MAX_DIFF = 2  # of 255: the compiled graph's float error, after decoding
BUCKETS = (2, 4)
SIZES = ((64, 64), (96, 64))  # (width, height)
GRAPHS = len(BUCKETS) * len(SIZES)
MIXED = [dict(steps=4, guidance_scale=7.5, scheduler="euler_a", seed=1),
         dict(steps=5, guidance_scale=1.0, scheduler="dpmpp_2m", seed=2),
         dict(steps=4, guidance_scale=3.0, scheduler="ddim", seed=3, num_images=2),
         dict(steps=6, guidance_scale=1.0, scheduler="", seed=4, num_images=3)]


@pytest.fixture(scope="module")
def compiled(lora_dir, folder):  # noqa: F811 - the imported fixtures
    service = RunningService("txt2img", "--engine", "step", "--compile", "--compile-buckets",
                             ",".join(map(str, BUCKETS)), "--compile-cache-dir", str(CACHE_DIR / "compile-tests"),
                             "--compile-sizes", ",".join(f"{w}x{h}" for w, h in SIZES),
                             # A row budget of 16 UNet rows: the mixed crowd (10) joins at once in any
                             # order, so its calls are shared whatever order the requests arrive in.
                             "--max-batch-size", "8", "--batch-wait-ms", "300", "--lora-dir", str(lora_dir),
                             "--controlnet-dir", str(folder))
    yield service
    service.stop()


def eager_calls(service, reason: str) -> float:
    return service.metric("imagegen_unet_eager_calls_total", reason=reason)


def diffusers_plain(prompt="a red fox", seed=7, steps=4, guidance=7.5, folder=None, size=(64, 64)) -> np.ndarray:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder or ensure_tiny(CACHE_DIR, False))
    pipe.set_progress_bar_config(disable=True)
    image = pipe(prompt, num_inference_steps=steps, width=size[0], height=size[1], guidance_scale=guidance,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(image, dtype=np.int16)


def test_every_bucket_is_warmed_before_serving(compiled):
    model = compiled.runtime.model
    for part, graphs in (("unet", model.compiled), ("vae", model.compiled_decode)):
        assert graphs is not None and graphs.buckets == BUCKETS
        assert {bucket for bucket, _signature in graphs.warmed} == set(BUCKETS) and len(graphs.warmed) == GRAPHS
        assert compiled.metric(f"imagegen_{part}_compiled_graphs_total") >= GRAPHS
        assert compiled.metric(f"imagegen_{part}_recompiles_total") == 0


@pytest.mark.parametrize("guidance,size", [(7.5, SIZES[0]), (1.0, SIZES[0]), (7.5, SIZES[1])])
def test_the_compiled_image_is_diffusers_own(compiled, guidance, size):
    # Guided: 2 UNet rows; unguided: 1, padded to the bucket of 2; and the second size warmed.
    before, calls = compiled.metric("imagegen_unet_compiled_calls_total"), compiled.metric("imagegen_step_rows_count")
    decodes = compiled.metric("imagegen_vae_compiled_calls_total")
    request = request_for("txt2img", guidance_scale=guidance, width=size[0], height=size[1])
    got = pixels(compiled.client.generate(request).images[0].data)
    # Every call of its steps went through a graph, and its decode (one image, padded to 2) too.
    assert compiled.metric("imagegen_unet_compiled_calls_total") - before == \
        compiled.metric("imagegen_step_rows_count") - calls > 0
    assert compiled.metric("imagegen_vae_compiled_calls_total") - decodes == 1
    assert np.abs(got - diffusers_plain(guidance=guidance, size=size)).max() <= MAX_DIFF


def test_a_mixed_crowd_runs_compiled_without_recompiling_or_a_call_above_the_largest_bucket(compiled):
    calls = compiled.metric("imagegen_step_rows_count")
    alone = [compiled.client.generate(request_for("txt2img", **fields)) for fields in MIXED]
    calls_alone = compiled.metric("imagegen_step_rows_count") - calls  # PNDM (the model's) calls one step twice
    graphs = compiled.runtime.model.compiled.graphs
    compiled_calls = compiled.metric("imagegen_unet_compiled_calls_total")
    calls, decodes = compiled.metric("imagegen_step_rows_count"), compiled.metric("imagegen_vae_compiled_calls_total")
    small = compiled.metric("imagegen_step_rows_bucket", le="4.0")
    together = all_at_once([lambda f=f: compiled.client.generate(request_for("txt2img", **f)) for f in MIXED])
    for one, crowd in zip(alone, together):
        for a, b in zip(one.images, crowd.images):
            assert np.abs(pixels(a.data) - pixels(b.data)).max() <= MAX_DIFF
    calls = compiled.metric("imagegen_step_rows_count") - calls
    print(f"UNet calls: {calls_alone:.0f} one request at a time, {calls:.0f} all at once")
    assert calls < calls_alone  # they shared calls
    assert compiled.metric("imagegen_step_rows_bucket", le="4.0") - small == calls  # none above the bucket of 4
    assert compiled.metric("imagegen_unet_compiled_calls_total") - compiled_calls == calls  # every one compiled
    assert compiled.metric("imagegen_unet_recompiles_total") == 0
    assert compiled.runtime.model.compiled.graphs == graphs == GRAPHS
    # The crowd's images (7, finishing at several calls) decoded through the graphs, none recompiled.
    assert compiled.metric("imagegen_vae_compiled_calls_total") - decodes > 0
    assert compiled.metric("imagegen_vae_recompiles_total") == 0
    assert compiled.runtime.model.compiled_decode.graphs == GRAPHS
    # The first image of the largest request against diffusers' pipeline too (unguided, the model's scheduler).
    assert np.abs(pixels(together[3].images[0].data) - diffusers_plain(seed=4, steps=6, guidance=1.0)).max() \
        <= MAX_DIFF


def test_another_size_runs_and_decodes_uncompiled_and_is_diffusers_own(compiled):
    unet_reason, vae_reason = "an input shape no graph was warmed with", "a latent size no graph was warmed with"
    before = (eager_calls(compiled, unet_reason), compiled.metric("imagegen_vae_eager_calls_total", reason=vae_reason))
    got = pixels(compiled.client.generate(request_for("txt2img", width=96, height=96)).images[0].data)
    assert eager_calls(compiled, unet_reason) - before[0] > 0
    assert compiled.metric("imagegen_vae_eager_calls_total", reason=vae_reason) - before[1] == 1
    assert np.abs(got - diffusers_plain(size=(96, 96))).max() <= MAX_DIFF
    assert compiled.metric("imagegen_unet_recompiles_total") == compiled.metric("imagegen_vae_recompiles_total") == 0


def test_a_controlnet_request_runs_uncompiled_and_is_diffusers_own(compiled, folder):  # noqa: F811
    reason = "UNet arguments no graph was warmed with"
    before, calls = eager_calls(compiled, reason), compiled.metric("imagegen_step_rows_count")
    request = with_units(request_for("txt2img", steps=4), dict(model="tiny-controlnet"))
    got = pixels(compiled.client.generate(request).images[0].data)
    assert eager_calls(compiled, reason) - before == compiled.metric("imagegen_step_rows_count") - calls > 0
    expected = controlnet_image(folder, "txt2img", "tiny", compiled.runtime.check(request), ["tiny-controlnet"])
    assert np.abs(got - expected).max() <= MAX_DIFF


def test_each_checkpoint_of_the_pool_has_its_compiled_unet_and_diffusers_own_images(lora_dir, tmp_path):  # noqa: F811
    from tests.model_folders import tiny_models_folder

    models = tiny_models_folder(tmp_path, ensure_tiny(CACHE_DIR, False))
    # As the module's service (the LoRA folder keeps QKV unfused): its graphs come from the cache on disk.
    service = RunningService("txt2img", "--engine", "step", "--compile", "--compile-buckets",
                             ",".join(map(str, BUCKETS)), "--compile-cache-dir", str(CACHE_DIR / "compile-tests"),
                             "--lora-dir", str(lora_dir),
                             "--models-dir", str(models), "--model", "alpha", "--model-config",
                             str(ensure_tiny(CACHE_DIR, False)), "--max-loaded", "2")
    try:
        for name in ("alpha", "beta"):
            calls = service.metric("imagegen_unet_compiled_calls_total")
            image = service.client.generate(request_for("txt2img", model=name)).images[0]
            assert service.metric("imagegen_unet_compiled_calls_total") > calls
            assert np.abs(pixels(image.data) - diffusers_plain(folder=models / name)).max() <= MAX_DIFF
        alpha, beta = (service.runtime.pool.held(name) for name in ("alpha", "beta"))
        assert alpha.compiled is not None and beta.compiled is not None and alpha.compiled is not beta.compiled
        assert beta.compiled.unet is beta.pipe.unet
        assert service.metric("imagegen_unet_recompiles_total") == 0
    finally:
        service.stop()


def test_a_lora_request_runs_uncompiled_and_is_diffusers_own(compiled, lora_dir):  # noqa: F811
    reason = "LoRA adapters are loaded on the UNet"
    before, calls = eager_calls(compiled, reason), compiled.metric("imagegen_step_rows_count")
    got = pixels(compiled.client.generate(request_for("txt2img", loras={"film": 0.8})).images[0].data)
    assert eager_calls(compiled, reason) - before == compiled.metric("imagegen_step_rows_count") - calls > 0
    assert np.abs(got - lora_image(lora_dir, {"film": 0.8})).max() <= MAX_DIFF
    assert compiled.metric("imagegen_unet_recompiles_total") == 0
