"""Live previews: the current latents seen through a linear latent-to-RGB projection.

No extra weights and no VAE call: each latent channel adds a fixed colour, with factors fitted for
the model family's latent space (the published approximations AUTOMATIC1111 and ComfyUI use for
their cheap previews). A preview costs a few small tensor ops and a small JPEG.
"""

from __future__ import annotations

import io

# Per family (models/family.py): 4 latent channels x RGB, and an RGB offset; roughly -1..1 out.
_SD = ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
       [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0])
LATENT_RGB = {
    "sd1": _SD,
    "sd2": _SD,  # SD 2.x kept SD 1.x's VAE, so its latent space
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
              [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}
LONG_SIDE = 256  # pixels, at most
QUALITY = 70


def preview_jpeg(latents, family_name: str) -> bytes:
    """JPEG bytes of latents (n, 4, h, w): the n images side by side, the long side at most 256 px."""
    return encode(preview_pixels(latents, family_name))


def preview_pixels(latents, family_name: str):
    """The preview's RGB pixels at latent size (h, n*w, 3 uint8, on the host): what needs the latents
    (and waits for the device); `encode` makes the JPEG of them anywhere after."""
    import torch

    factors, bias = LATENT_RGB[family_name]
    with torch.inference_mode():
        x = latents.detach().to("cpu", torch.float32)
        rgb = torch.einsum("nchw,cr->nrhw", x, torch.tensor(factors)) + torch.tensor(bias).view(1, 3, 1, 1)
        strip = torch.cat(list(rgb), dim=2)  # (3, h, n*w)
        return ((strip.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def encode(pixels) -> bytes:
    """The JPEG of preview_pixels' pixels, enlarged up to 8x (a latent pixel is 8 image pixels), but never
    past the long-side limit."""
    from PIL import Image

    image = Image.fromarray(pixels, "RGB")
    scale = min(8.0, LONG_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    buf = io.BytesIO()
    image.resize(size, Image.BILINEAR).save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def due(spec, step: int, total: int) -> bool:
    """Whether step `step` (1-based) of `total` brings a preview: every preview_every steps, but not
    the last one (the result follows at once)."""
    every = getattr(spec, "preview_every", 0)
    return bool(every) and step % every == 0 and step < total
