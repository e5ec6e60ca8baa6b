"""The Gradio app: `build_ui(backends)` gives a gr.Blocks (testable without launching); `main` serves it.

Tabs Txt2Img, Img2Img and Inpainting, like the original app, each calling its mode's service over
gRPC. Ranges and choices come from each service's GetInfo; progress comes from GenerateStream.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from services.client import MODES, make_request
from services.common import config as service_defaults

from .backend import GenerationError, ModeBackend
from .config import GatewayConfig, load_config
from .masks import editor_inputs

log = logging.getLogger("gateway")
TAB_LABELS = {"txt2img": "Txt2Img", "img2img": "Img2Img", "inpaint": "Inpainting"}
MODEL_DEFAULT = "model default"


@dataclass
class Controls:
    """The Advanced settings of one tab, whose ranges and choices come from GetInfo."""

    steps: object
    guidance: object
    width: object
    height: object
    seed: object
    num_images: object
    scheduler: object
    extra: dict = field(default_factory=dict)  # strength, mask blur

    def ranged(self) -> list:
        return [self.steps, self.guidance, self.width, self.height, self.num_images, self.scheduler]


def _limits(info):
    """GetInfo's limits and defaults, or the services' own defaults when the service is unreachable."""
    if info is not None:
        return info.limits, info.defaults, list(info.schedulers)
    from imagegen.v1 import imagegen_pb2 as pb

    lim, dft = service_defaults.Limits(), service_defaults.Defaults()
    limits = pb.Limits(max_width=lim.max_width, max_height=lim.max_height, max_steps=lim.max_steps,
                       max_images=lim.max_images, max_guidance_scale=lim.max_guidance_scale)
    defaults = pb.Defaults(num_inference_steps=dft.num_inference_steps, guidance_scale=dft.guidance_scale,
                           width=dft.size, height=dft.size, strength=dft.strength_img2img, mask_blur=dft.mask_blur)
    from services.common.schedulers import names

    return limits, defaults, names()


def _range_updates(mode: str, info) -> list:
    """gr.update()s for Controls.ranged(), from a fresh GetInfo."""
    limits, _defaults, schedulers = _limits(info)
    sized = mode == "txt2img"
    return [
        gr.update(maximum=limits.max_steps),
        gr.update(maximum=limits.max_guidance_scale),
        gr.update(maximum=limits.max_width, minimum=64 if sized else 0),
        gr.update(maximum=limits.max_height, minimum=64 if sized else 0),
        gr.update(maximum=limits.max_images),
        gr.update(choices=[MODEL_DEFAULT, *schedulers]),
    ]


def _controls(mode: str, info) -> Controls:

    limits, defaults, schedulers = _limits(info)
    sized = mode == "txt2img"
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            steps = gr.Slider(1, limits.max_steps, value=defaults.num_inference_steps, step=1, label="Steps",
                              elem_id=f"{mode}-steps")
            guidance = gr.Slider(0, limits.max_guidance_scale, value=defaults.guidance_scale, step=0.5,
                                 label="Guidance scale (CFG)", elem_id=f"{mode}-guidance")
        with gr.Row():
            # Image modes: 0 keeps the input image's own size (rounded down to a multiple of 8).
            width = gr.Slider(64 if sized else 0, limits.max_width, value=defaults.width if sized else 0, step=8,
                              label="Width" if sized else "Width (0 = the input's)", elem_id=f"{mode}-width")
            height = gr.Slider(64 if sized else 0, limits.max_height, value=defaults.height if sized else 0,
                               step=8, label="Height" if sized else "Height (0 = the input's)",
                               elem_id=f"{mode}-height")
        with gr.Row():
            seed = gr.Number(-1, precision=0, label="Seed (-1 = random)", elem_id=f"{mode}-seed")
            num_images = gr.Slider(1, limits.max_images, value=1, step=1, label="Number of images",
                                   elem_id=f"{mode}-num-images")
            scheduler = gr.Dropdown([MODEL_DEFAULT, *schedulers], value=MODEL_DEFAULT, label="Scheduler",
                                    elem_id=f"{mode}-scheduler")
        extra = {}
        if mode != "txt2img":
            extra["strength"] = gr.Slider(0.05, 1, value=defaults.strength or 0.8, step=0.05, label="Strength",
                                          elem_id=f"{mode}-strength")
        if mode == "inpaint":
            extra["mask_blur"] = gr.Slider(0, 64, value=defaults.mask_blur, step=1, label="Mask blur (px)",
                                           elem_id=f"{mode}-mask-blur")
    return Controls(steps, guidance, width, height, seed, num_images, scheduler, extra)


def _common_request_args(steps, guidance, width, height, seed, num_images, scheduler) -> dict:
    seed = None if seed is None or int(seed) < 0 else int(seed)
    return {
        "steps": int(steps),
        "guidance_scale": float(guidance),
        "width": int(width or 0),
        "height": int(height or 0),
        "seed": seed,
        "num_images": int(num_images),
        "scheduler": "" if not scheduler or scheduler == MODEL_DEFAULT else scheduler,
    }


class Gateway:
    """The generate functions behind the tabs: inputs -> request -> service -> gallery files."""

    def __init__(self, backends: dict[str, ModeBackend], keep_s: float = 3600.0):
        self.backends = backends
        self.out_dir = Path(tempfile.mkdtemp(prefix="imagegen-gateway-"))
        self.keep_s = keep_s  # results older than this are deleted, so a long-running gateway's disk stays flat

    def _prune(self) -> None:
        cutoff = time.time() - self.keep_s
        for folder in self.out_dir.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def _run(self, mode: str, request, progress):

        def on_progress(step, total, position):
            if position is not None:
                progress(0, desc=f"{mode}: queued, {position} ahead")
            else:
                progress((step, total), desc=f"{mode}: step {step}/{total}", unit="steps")

        try:
            result = self.backends[mode].generate(request, on_progress)
        except GenerationError as err:
            raise gr.Error(str(err), title=f"{TAB_LABELS[mode]} error", print_exception=False) from None
        self._prune()
        folder = Path(tempfile.mkdtemp(dir=self.out_dir))
        paths = []
        for i, image in enumerate(result.images):
            ext = image.mime_type.split("/")[-1].replace("jpeg", "jpg")
            path = folder / f"{mode}-{image.seed}-{i}.{ext}"
            path.write_bytes(image.data)  # the service's bytes, infotext chunk included
            paths.append(str(path))
        seeds = ", ".join(str(seed) for seed in result.seeds)
        infotext = "\n\n".join(image.infotext for image in result.images)
        return paths, seeds, infotext

    def txt2img(self, prompt, negative_prompt, steps, guidance, width, height, seed, num_images, scheduler,
                progress=gr.Progress()):
        request = make_request("txt2img", prompt or "", negative_prompt=negative_prompt or "",
                               **_common_request_args(steps, guidance, width, height, seed, num_images, scheduler))
        return self._run("txt2img", request, progress)

    def img2img(self, image, prompt, negative_prompt, strength, steps, guidance, width, height, seed, num_images,
                scheduler, progress=gr.Progress()):

        if image is None:
            raise gr.Error("Img2Img: upload an input image first.", print_exception=False)
        request = make_request("img2img", prompt or "", negative_prompt=negative_prompt or "",
                               image=image, strength=float(strength),
                               **_common_request_args(steps, guidance, width, height, seed, num_images, scheduler))
        return self._run("img2img", request, progress)

    def inpaint(self, editor, mask, prompt, negative_prompt, strength, mask_blur, steps, guidance, width, height,
                seed, num_images, scheduler, progress=gr.Progress()):

        try:
            image, mask = editor_inputs(editor, mask)
        except ValueError as err:
            raise gr.Error(f"Inpainting: {err}.", print_exception=False) from None
        request = make_request("inpaint", prompt or "", negative_prompt=negative_prompt or "",
                               image=image, mask=mask, strength=float(strength), mask_blur=int(mask_blur),
                               **_common_request_args(steps, guidance, width, height, seed, num_images, scheduler))
        return self._run("inpaint", request, progress)

    def status_line(self, mode: str) -> str:
        backend = self.backends[mode]
        status = backend.status()
        return f"**{mode}** service at `{backend.address}`: **{status}**"


def _selected_image(gallery, index):
    if not gallery:
        return None
    item = gallery[min(index or 0, len(gallery) - 1)]
    path = item[0] if isinstance(item, (tuple, list)) else item
    from PIL import Image

    return Image.open(path).convert("RGB")


def build_ui(backends: dict[str, ModeBackend]):
    """The whole app as a gr.Blocks. Reads each service's GetInfo once, and again on each page load."""

    gateway = Gateway(backends)
    infos = {mode: backends[mode].info() for mode in MODES}
    controls: dict[str, Controls] = {}
    statuses = {}
    galleries = {}

    # delete_cache: Gradio's copies of results and uploads are removed after an hour, too.
    with gr.Blocks(title="imagegen", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# imagegen - Stable Diffusion")
        with gr.Tabs() as tabs:
            for mode in MODES:
                with gr.Tab(TAB_LABELS[mode], id=mode, elem_id=f"tab-{mode}"):
                    statuses[mode] = gr.Markdown(elem_id=f"{mode}-status")
                    with gr.Row():
                        with gr.Column():
                            if mode == "img2img":
                                init = gr.Image(type="pil", label="Input image", sources=["upload", "clipboard"],
                                                height=360, elem_id="img2img-input")
                            if mode == "inpaint":
                                editor = gr.ImageEditor(
                                    type="pil", label="Image: paint over the part to repaint",
                                    brush=gr.Brush(colors=["#ffffff"], color_mode="defaults"),
                                    sources=["upload", "clipboard"], elem_id="inpaint-editor",
                                )
                                mask_upload = gr.Image(type="pil", image_mode=None, elem_id="inpaint-mask",
                                                       label="Or upload a mask (white = repaint)")
                            prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{mode}-prompt")
                            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{mode}-negative")
                            controls[mode] = c = _controls(mode, infos[mode])
                            button = gr.Button("Generate", variant="primary", elem_id=f"{mode}-generate")
                        with gr.Column():
                            gallery = gr.Gallery(label="Result", type="filepath", format="png", interactive=False,
                                                 elem_id=f"{mode}-gallery", columns=2)
                            seeds = gr.Textbox(label="Seeds", interactive=False, elem_id=f"{mode}-seeds")
                            infotext = gr.Textbox(label="Parameters (infotext)", lines=3, interactive=False,
                                                  elem_id=f"{mode}-infotext")
                            selected = gr.State(0)
                            with gr.Row():
                                to_img2img = gr.Button("Send to Img2Img", size="sm", elem_id=f"{mode}-to-img2img")
                                to_inpaint = gr.Button("Send to Inpainting", size="sm", elem_id=f"{mode}-to-inpaint")
                    galleries[mode] = (gallery, selected, to_img2img, to_inpaint)
                    advanced = [c.steps, c.guidance, c.width, c.height, c.seed, c.num_images, c.scheduler]
                    if mode == "txt2img":
                        inputs = [prompt, negative, *advanced]
                    elif mode == "img2img":
                        img2img_input = init
                        inputs = [init, prompt, negative, c.extra["strength"], *advanced]
                    else:
                        inpaint_editor = editor
                        inputs = [editor, mask_upload, prompt, negative, c.extra["strength"], c.extra["mask_blur"],
                                  *advanced]
                    button.click(getattr(gateway, mode), inputs=inputs,
                                 outputs=[gallery, seeds, infotext], api_name=mode,
                                 concurrency_limit=None, concurrency_id=mode)

        def select_index(evt: gr.SelectData):
            return evt.index

        for mode, (gallery, selected, to_img2img, to_inpaint) in galleries.items():
            gallery.select(select_index, None, selected, api_visibility="private")
            to_img2img.click(lambda g, i: (_selected_image(g, i), gr.Tabs(selected="img2img")),
                             [gallery, selected], [img2img_input, tabs], api_visibility="private")
            to_inpaint.click(lambda g, i: (_selected_image(g, i), gr.Tabs(selected="inpaint")),
                             [gallery, selected], [inpaint_editor, tabs], api_visibility="private")

        status_outputs = [statuses[mode] for mode in MODES]
        range_outputs = [component for mode in MODES for component in controls[mode].ranged()]

        def refresh_all():
            updates = [gateway.status_line(mode) for mode in MODES]
            for mode in MODES:
                updates += _range_updates(mode, backends[mode].info())
            return updates

        def refresh_status():
            return [gateway.status_line(mode) for mode in MODES]

        demo.load(refresh_all, None, status_outputs + range_outputs, api_visibility="private")
        gr.Timer(10).tick(refresh_status, None, status_outputs, api_visibility="private")
    demo.gateway = gateway
    return demo


def make_backends(config: GatewayConfig) -> dict[str, ModeBackend]:
    return {mode: ModeBackend(mode, config.addresses[mode], config.timeout_s, config.retries, config.security)
            for mode in MODES}


def launch(demo, config: GatewayConfig, *, block: bool = True):
    auth = (config.username, config.password) if config.username else None
    demo.queue(default_concurrency_limit=config.concurrency)
    return demo.launch(
        server_name=config.host,
        server_port=config.port,
        auth=auth,
        max_file_size=int(config.max_upload_mb * 1024 * 1024),
        show_error=True,
        ssr_mode=False,
        quiet=True,
        prevent_thread_lock=not block,
    )


def main(argv=None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(argv)
    demo = build_ui(make_backends(config))
    print(f"gateway: http://{config.host}:{config.port}  (" + ", ".join(
        f"{m} -> {a}" for m, a in config.addresses.items()) + ")", flush=True)
    launch(demo, config)
    return 0
