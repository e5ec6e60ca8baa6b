"""On a CUDA machine: the embedded tiny-xl model in float16 (the device default), each mode, the step
engine's image vs diffusers' own pipeline (SDXL's VAE is decoded in float32 by both). Prints the largest
difference; exits 1 above 3/255."""

from __future__ import annotations

import sys

import numpy as np
import torch

from services.core.config import load_config
from services.core.engine.denoise import decode, unet_step
from services.core.engine.rows import encode_prompt
from services.core.imaging import images
from services.core.models import schedulers
from services.core.models.loading import load_pipeline
from services.client import make_request


def main() -> int:
    from services.img2img.mode import MODE as IMG2IMG
    from services.inpaint.mode import MODE as INPAINT
    from services.txt2img.mode import MODE as TXT2IMG

    worst = 0
    for mode in (TXT2IMG, IMG2IMG, INPAINT):
        config = load_config(mode, ["--model", "tiny-xl", "--device", "cuda:0"], environ={})
        pipe = load_pipeline(mode, config)[0]
        extra = {}
        if mode.contract.takes_image:
            extra["image"] = images.solid_png((256, 256))
        if mode.contract.takes_mask:
            extra["mask"] = images.solid_png((256, 256), "L", 255)
        for scheduler in ("", "euler_a", "dpmpp_2m_karras"):
            spec = mode.check(make_request(mode.name, "a red fox", steps=12, width=256, height=256, seed=3,
                                           scheduler=scheduler, **extra), config)
            base = pipe.scheduler
            with torch.inference_mode():
                pipe.scheduler = schedulers.fresh(spec.scheduler, base)
                expected = mode.run(pipe, [spec], [torch.Generator("cpu").manual_seed(3)], lambda p, i, t, k: k)
                pipe.scheduler = base
                row = mode.admit(pipe, spec, encode_prompt(pipe, spec), 3, schedulers.fresh(spec.scheduler, base))
                pipe.scheduler = base
                while not row.done:
                    unet_step(pipe.unet, [row])
                got = [mode.finish(spec, image) for image in decode(pipe, [row])]
            diff = int(np.abs(np.asarray(expected[0], dtype=np.int16) - np.asarray(got[0], dtype=np.int16)).max())
            worst = max(worst, diff)
            print(f"tiny-xl {pipe.unet.dtype} {mode.name} {scheduler or 'model default'}: max difference {diff}/255 "
                  f"(VAE {pipe.vae.dtype}, force_upcast {pipe.vae.config.force_upcast})")
    return 0 if worst <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
