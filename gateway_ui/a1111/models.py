"""A1111's request bodies for /txt2img and /img2img: its field names and defaults (modules/api/models.py
builds them from modules/processing.py's StableDiffusionProcessing* classes; these are those fields).

Unknown keys are ignored and null means the default, as A1111 takes them. Wrong types are FastAPI's 422.
Fields listed in `UNSUPPORTED` change the picture in A1111 but have no counterpart here: a value other
than their default is refused naming the field (mapping.check_supported), never silently dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_N_ITER = 32  # batches per call (each its own request to the service, all at once)


class A1111Body(BaseModel):
    """What every A1111 request body shares: unknown keys ignored, null as the default."""

    # NaN and Infinity (which Python's JSON reader takes) are refused: echoed in `info`, JSON text, they
    # would make it unreadable to a strict parser (a browser's JSON.parse).
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data):
        """A1111's clients send null for "as default" (Open WebUI, scripts built on dicts)."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class _Request(A1111Body):
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = []  # the gateway's --styles names, applied to both prompts (a 422 for an unknown one)
    seed: int = -1  # -1: random; image i gets seed + i
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None  # falls back to sampler_index
    sampler_index: str = "Euler"
    scheduler: str | None = None  # A1111 1.9+: "Automatic", "Karras", ... (name or label)
    batch_size: int = Field(1, ge=1)
    n_iter: int = Field(1, ge=1, le=MAX_N_ITER)
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None  # sampler knobs: the services' schedulers use their own
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] = {}
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict | None = None
    script_name: str | None = None
    script_args: list = []
    send_images: bool = True
    save_images: bool = False  # A1111's API default: nothing is kept unless asked
    alwayson_scripts: dict[str, Any] = {}
    force_task_id: str | None = None
    infotext: str | None = None


class Txt2ImgRequest(_Request):
    enable_hr: bool = False
    denoising_strength: float = 0.75  # the hires pass's (A1111's StableDiffusionProcessingTxt2Img default)
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class Img2ImgRequest(_Request):
    init_images: list[str] | None = None  # base64, with or without a data:image/...;base64, prefix
    resize_mode: int = 0  # 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None  # instruct-pix2pix models only (A1111 ignores it for others)
    mask: str | None = None  # base64; with a mask the call goes to the inpaint service
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = True  # "only masked": crop to the mask's box + padding, paste back
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = Field(False, exclude=True)


# Fields whose non-default values change the picture in A1111 and that nothing here does: the default
# (or None) passes, anything else is a 422 naming the field with this reason.
UNSUPPORTED: dict[str, tuple[tuple, str]] = {
    "subseed_strength": ((0, 0.0), "variation seeds are not supported"),
    "seed_resize_from_h": ((-1, 0), "seed resize is not supported"),
    "seed_resize_from_w": ((-1, 0), "seed resize is not supported"),
    "restore_faces": ((None, False), "face restoration is not supported"),
    "tiling": ((None, False), "tiling is not supported"),
    "refiner_checkpoint": ((None, "", "None", "none"), "refiner models are not supported"),
    "initial_noise_multiplier": ((None, 1, 1.0), "an initial noise multiplier is not supported"),
    "latent_mask": ((None,), "a separate latent mask is not supported"),
}
