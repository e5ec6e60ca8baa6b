"""The Gradio app: `build_ui(gateway)` lays the tabs out over a Gateway, as a gr.Blocks (testable without
launching); `main` serves it.

Tabs Txt2Img, Img2Img and Inpainting, like the original app, each calling its mode's service over
gRPC. Each tab is described once in `tabs.py`; ranges and choices come from each service's GetInfo;
progress comes from GenerateStream. Each tab forwards at most `concurrency` generations at once
(Gradio queues the rest). Every final image is kept on disk (`outputs.py`); the History tab
(`history.py`) lists them, the PNG Info tab (`png_info.py`) reads any image's parameters, and both
send them back to a tab (`recall.py`).

The browser is shown plain messages only: never an exception's text, a file path or a service's
address. Anything unexpected is shown as "... failed with an internal error (id XXXXXXXX)" and
logged (logger "gateway") with that id and its traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from imagegen.v1.contract import FORMAT_BY_MIME, MODES, UPSCALE_MODE
from services.client import Progress, Queued

from . import a1111, batch, checkpoints, controlnet, hires, recall, shortcuts
from .backend import GenerationError, Interrupted, ModeBackend, internal_error_message, new_error_id
from .batch import BatchRun
from .config import GatewayConfig, load_config
from .endpoints import named_endpoint
from .extras import build_extras, wire_extras
from .history import build_history, pick, served, show_page
from .hub import Hub
from .inputs import problem
from .outputs import OutputStore, SaveError
from .png_info import build_png_info, parameters_of, wire_png_info
from .styles import StyleBook, UnknownStyle, apply_styles
from .tabs import TABS, InputError, Tab, build_tab
from .xyz.ui import wire_xyz

log = logging.getLogger("gateway")

MAX_OUTCOMES = 10_000  # the last runs' outcomes kept for the page, one per session and tab


class Gateway:
    """What happens behind the tabs: a request to its service through the hub, progress to the browser,
    files back."""

    def __init__(self, hub: Hub, keep_s: float = 3600.0, preview_s: float = 0.0):
        self.hub = hub
        self.preview_s = preview_s  # at most one preview sent to the page this often
        self.out_dir = Path(tempfile.mkdtemp(prefix="imagegen-gateway-"))
        self.keep_s = keep_s  # results older than this are deleted, so a long-running gateway's disk stays flat
        self._states: dict[str, str] = {}  # mode -> the state last logged
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], list[BatchRun]] = {}  # (session, mode) -> its runs in progress
        self._outcomes: dict[tuple[str, str], str] = {}  # (session, mode) -> how its last run ended

    @property
    def backends(self) -> dict[str, ModeBackend]:
        return self.hub.backends

    @property
    def outputs(self) -> OutputStore | None:
        return self.hub.outputs

    def _prune(self) -> None:
        cutoff = time.time() - self.keep_s
        for folder in self.out_dir.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def run(self, mode: str, requests: list, progress, session: str = ""):
        """Generate: yields (gallery files, seeds, infotext) updates: a live preview every few steps, then
        the final images (the service's own bytes), their seeds and infotext. `requests`: the batch count's
        iterations (gateway_ui/batch.py), run one after another, each iteration's images added to those
        before. `session` names the browser session, so its Skip and Interrupt buttons and its closing
        reach this generation; the run's outcome in words is then `outcome(mode, session)`."""
        self._prune()
        key, run = (session, mode), BatchRun(len(requests))
        with self._lock:
            self._runs.setdefault(key, []).append(run)
        self._set_outcome(key, "")
        paths, seeds, infotexts = [], [], []
        ended = False  # the run ended by itself or by Skip and Interrupt (not by a failure)
        try:
            for i, request in enumerate(requests):
                if run.interrupted:
                    break
                where = f"{mode}: batch {i + 1}/{run.count}" if run.count > 1 else mode
                job = self.hub.start(mode, request, tab_owner(session))
                run.begin(job)
                result, shown = None, None  # shown: when the last preview went to the page
                try:
                    for event in self.hub.follow(job):
                        if isinstance(event, Queued):
                            progress(0, desc=f"{where}: queued, {event.position} ahead")
                        elif isinstance(event, Progress):
                            progress((event.step, event.total_steps),
                                     desc=f"{where}: step {event.step}/{event.total_steps}", unit="steps")
                            if event.preview and (shown is None or time.monotonic() - shown >= self.preview_s):
                                shown = time.monotonic()
                                preview = self._keep(mode, "preview", event.preview, "jpg")
                                yield [*paths, preview], ", ".join(seeds), "\n\n".join(infotexts)
                        else:
                            result = event
                except Interrupted:  # asked for: Skip goes on to the next iteration, Interrupt ends the run
                    if run.end():
                        run.skipped += 1
                        continue
                    run.interrupted = True
                    break
                except GenerationError as err:
                    raise gr.Error(str(err), title=f"{MODES[mode].label} error", print_exception=False) from None
                run.end()
                run.done += 1
                for j, image in enumerate(result.images):
                    fmt = FORMAT_BY_MIME.get(image.mime_type)
                    # The service's bytes, infotext chunk included.
                    paths.append(self._keep(mode, f"{image.seed}-{j}", image.data, fmt.extension if fmt else "png"))
                try:
                    self.hub.save(mode, result.images)
                except SaveError as err:  # a warning: the result itself is still shown
                    gr.Warning(str(err), title=f"{MODES[mode].label}: not saved")
                seeds += [str(seed) for seed in result.seeds]
                infotexts += [image.infotext for image in result.images]
                yield paths, ", ".join(seeds), "\n\n".join(infotexts)
            ended = True
        finally:
            with self._lock:
                self._runs[key].remove(run)
                if not self._runs[key]:
                    del self._runs[key]
            self._set_outcome(key, run.summary(len(paths)) if ended else "")
        if run.interrupted:  # a note, not an error; with nothing made, the last preview stays
            gr.Info(f"{mode}: interrupted.", title=MODES[mode].label)
            if paths:
                yield paths, ", ".join(seeds), "\n\n".join(infotexts)

    def _set_outcome(self, key: tuple[str, str], text: str) -> None:
        with self._lock:
            self._outcomes.pop(key, None)
            self._outcomes[key] = text
            while len(self._outcomes) > MAX_OUTCOMES:  # the oldest sessions' go first
                del self._outcomes[next(iter(self._outcomes))]

    def outcome(self, mode: str, session: str) -> str:
        """How the session's last generation of `mode` ended, in words ("" while it runs, after an error)."""
        with self._lock:
            return self._outcomes.get((session, mode), "")

    def _keep(self, mode: str, name: str, data: bytes, extension: str) -> str:
        """A file for the browser, in a folder of its own (pruned after keep_s, once per generation)."""
        path = Path(tempfile.mkdtemp(dir=self.out_dir)) / f"{mode}-{name}.{extension}"
        path.write_bytes(data)
        return str(path)

    def close(self) -> None:
        """Stop: every running generation cancelled, the channels closed, the results folder removed
        (Gradio's own cache goes with the Blocks' close, `delete_cache`)."""
        self.hub.close()
        shutil.rmtree(self.out_dir, ignore_errors=True)

    def _session_runs(self, mode: str | None, session: str) -> list[BatchRun]:
        with self._lock:
            return [run for (owner, of), runs in self._runs.items() if owner == session and mode in (None, of)
                    for run in runs]

    def interrupt(self, mode: str | None, session: str) -> bool:
        """Cancel the session's running generations of `mode` (None: all of its modes), their remaining
        iterations too; True if one ran."""
        runs = self._session_runs(mode, session)
        for run in runs:
            run.interrupt()
        return bool(self.hub.cancel(tab_owner(session), mode)) or bool(runs)

    def skip(self, mode: str, session: str) -> None:
        """End the current iteration of the session's generations of `mode`; their next iterations run."""
        for run in self._session_runs(mode, session):
            run.skip()

    def status_line(self, mode: str, model: str | None = None) -> str:
        """The mode, its service's state and, when serving, the chosen model (`model`; None: the default)
        by its listed name and family (never the configured path, which may be a file on the service's
        machine); the address goes to the log (on a change)."""
        backend = self.backends[mode]
        state = backend.status()
        if self._states.get(mode) != state:
            self._states[mode] = state
            log.info("%s service at %s: %s", mode, backend.address, state)
        model = backend.model_label(model) if state == "serving" else ""
        return f"**{mode}** service: **{state}**" + (f" · {model}" if model else "")


def endpoint(gateway: Gateway, tab: Tab):
    """The tab's Generate function. Its signature names the tab's inputs, so they are the API's
    parameter names. Each may be left out: a form field then takes the form's value; an image
    input is None (the inpaint mask: the brush layers are the mask; the image: a clear error)."""
    names = list(tab.inputs)
    label = tab.spec.contract.label

    def generate(*args):
        *values, progress, session = args
        try:
            try:
                chosen = dict(zip(names, values))
                request = tab.spec.request(chosen)
                controlnet.add_units(request, chosen, tab.spec.contract.takes_image, len(tab.controlnet.units))
                apply_styles(gateway.hub.styles, request, chosen.get("styles"))
                requests = batch.iterations(request, batch.batch_count(chosen))
            except (InputError, UnknownStyle) as err:  # our own words, naming what to fix
                raise gr.Error(f"{label}: {err}.", print_exception=False) from None
            yield from gateway.run(tab.mode, requests, progress, session_of(session))
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - a fault of the gateway itself: an id for the browser, the rest logged
            error_id = new_error_id()
            log.exception("%s: internal error (id %s)", tab.mode, error_id)
            raise gr.Error(internal_error_message(tab.mode, error_id), title=f"{label} error",
                           print_exception=False) from None

    return named_endpoint(generate, names, tab.mode)


def interrupter(gateway: Gateway, mode: str | None):
    """The Interrupt button's function (mode None: the page closing, every mode of its session)."""
    def interrupt(request: gr.Request):
        gateway.interrupt(mode, session_of(request))
    return interrupt


def skipper(gateway: Gateway, mode: str):
    """The Skip button's function: the current image (iteration) of the batch count ends, the next runs."""
    def skip(request: gr.Request):
        gateway.skip(mode, session_of(request))
    return skip


def outcome_reader(gateway: Gateway, mode: str):
    """After a generation: how it ended, for the tab's outcome line."""
    def read(request: gr.Request):
        return gateway.outcome(mode, session_of(request))
    return read


def wire_seed_buttons(tab: Tab) -> None:
    """🎲 sets the seed to -1 (random); ♻️ to the seed of the image picked in the gallery (A1111's)."""
    seed = tab.inputs["seed"]
    tab.controls.random_seed.click(lambda: -1, None, seed, api_visibility="private")
    tab.controls.reuse_seed.click(batch.reused_seed, [tab.outputs[1], tab.selected], seed, api_visibility="private")


def tab_owner(session: str) -> str:
    """The hub's owner of a browser session's jobs."""
    return f"tab:{session}"


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


def _selected_path(gallery, index):
    if not gallery:
        return None
    item = gallery[min(index or 0, len(gallery) - 1)]
    return item[0] if isinstance(item, (tuple, list)) else item


def sendable(path, target: Tab, backend: ModeBackend):
    """The image file at `path` as the value of `target`'s image input: the file itself (its own bytes go
    on, as an upload's do), after its header's size is checked against the target service's limit. Never
    decoded here. A file that does not fit is refused, naming the tab's input."""
    if path is None:
        return None
    refused = problem(path, f"{target.spec.contract.label}: the input image sent",
                      backend.info().limits.max_input_pixels)
    if refused:
        raise gr.Error(refused, title=f"{target.spec.contract.label}: not sent", print_exception=False)
    return path


def build_ui(gateway: Gateway, concurrency: int | None = None):
    """The whole app as a gr.Blocks over `gateway` (its backends, its outputs, its previews). Reads each
    service's GetInfo once, and again on each page load.

    concurrency: generations each tab forwards at once (GatewayConfig.concurrency); the rest wait in
    Gradio's queue. None: the queue's default, which `launch` sets to the configured concurrency."""

    backends, outputs = gateway.backends, gateway.outputs
    image_modes = [spec.contract for spec in TABS if spec.contract.takes_image]
    tabs: dict[str, Tab] = {}

    # delete_cache: Gradio's copies of results and uploads are removed after an hour, too.
    with gr.Blocks(title="imagegen", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# imagegen - Stable Diffusion")
        with gr.Tabs() as tab_row:
            for spec in TABS:
                tab, button = build_tab(spec, backends[spec.contract.name].info(), image_modes,
                                        gateway.hub.styles.names())
                tabs[tab.mode] = tab
                # The progress bar sits on the infotext box: the gallery stays clear for the live previews.
                running = button.click(endpoint(gateway, tab), inputs=list(tab.inputs.values()), outputs=tab.outputs,
                                       api_name=tab.mode, concurrency_id=tab.mode, show_progress_on=tab.outputs[2],
                                       concurrency_limit="default" if concurrency is None else concurrency)
                # The outcome line ("Done: ...", "Interrupted: ..."): read after the event, so the API's
                # outputs stay the gallery, the seeds and the infotext.
                running.then(outcome_reader(gateway, tab.mode), None, tab.outcome, api_visibility="private")
                # Interrupt: the service stops this session's request at the next step and no further
                # iteration starts; the generation then ends by itself, showing what was made (the last
                # preview when nothing was). Skip: the current iteration only.
                tab.interrupt.click(interrupter(gateway, tab.mode), None, None, api_visibility="private")
                tab.skip.click(skipper(gateway, tab.mode), None, None, api_visibility="private")
                wire_seed_buttons(tab)
                if tab.xyz is not None:  # its own button and API endpoint (/txt2img_xyz)
                    wire_xyz(gateway, tab, tab.xyz, lambda request: tab_owner(session_of(request)), concurrency)
            extras = build_extras(backends[UPSCALE_MODE].info())
            png_image, png_view, png_send = build_png_info()
            history = build_history(outputs)

        def select_index(evt: gr.SelectData):
            return evt.index

        def send_to(target: str):
            def send(gallery, index):
                path = _selected_path(gallery, index)
                return sendable(path, tabs[target], backends[target]), gr.Tabs(selected=target)
            return send

        for tab in tabs.values():
            gallery = tab.outputs[0]
            gallery.select(select_index, None, tab.selected, api_visibility="private")
            for target, send in tab.send_buttons.items():
                send.click(send_to(target), [gallery, tab.selected], [tabs[target].image_target, tab_row],
                           api_visibility="private")

        def send_parameters(target: Tab):
            """A send of an image file's parameters (and the image itself, to an image mode) to `target`."""
            def send(path):
                takes_image = target.image_target is not None
                image = sendable(path, target, backends[target.mode]) if takes_image else None
                return recall.updates(target, parameters_of(path), image, backends[target.mode].info())
            return send

        wire_png_info(png_image, png_view)
        for target, button in png_send.items():
            button.click(send_parameters(tabs[target]), png_image, recall.targets(tabs[target], tab_row),
                         api_visibility="private")

        def history_page(mode, page):
            return show_page(outputs, mode, page)

        page_outputs = [history.gallery, history.page, history.summary, history.names]
        history.refresh.click(history_page, [history.mode, history.page], page_outputs, api_name="history")
        history.page.submit(history_page, [history.mode, history.page], page_outputs, api_visibility="private")
        history.mode.change(lambda mode: show_page(outputs, mode, 1), history.mode, page_outputs,
                            api_visibility="private")
        history.previous.click(lambda mode, page: show_page(outputs, mode, (page or 1) - 1),
                               [history.mode, history.page], page_outputs, api_visibility="private")
        history.next.click(lambda mode, page: show_page(outputs, mode, (page or 1) + 1),
                           [history.mode, history.page], page_outputs, api_visibility="private")
        history.tab.select(history_page, [history.mode, history.page], page_outputs, api_visibility="private")

        def history_pick(names, evt: gr.SelectData):
            return pick(outputs, names, evt.index)

        history.gallery.select(history_pick, history.names, [history.picked, history.chosen,
                                                             history.view.infotext, history.view.fields],
                               api_visibility="private")

        def send_saved(target: Tab):
            send = send_parameters(target)

            def send_file(name):
                path = outputs.find(name) if outputs is not None and name else None
                # The outputs folder is not served: the image goes as its copy in Gradio's cache.
                return send(served(str(path)) if path is not None else None)
            return send_file

        for target, button in history.send.items():
            button.click(send_saved(tabs[target]), history.chosen, recall.targets(tabs[target], tab_row),
                         api_visibility="private")

        modes = list(tabs)
        status_outputs = [tabs[mode].status for mode in modes]
        model_inputs = [tabs[mode].model for mode in modes]
        range_outputs = [component for mode in modes
                         for component in [*tabs[mode].controls.ranged, *tabs[mode].networks.refreshed,
                                           tabs[mode].model, tabs[mode].styles, *hires.ranged(tabs[mode].inputs)]]

        def refresh_all():
            """A page load: every tab's status, ranges, LoRA and embedding cards, checkpoints (the default
            chosen) and styles."""
            infos = {mode: backends[mode].info() for mode in modes}
            styles = gr.update(choices=gateway.hub.styles.names())
            updates = [gateway.status_line(mode, checkpoints.default_name(infos[mode])) for mode in modes]
            for mode in modes:
                info = infos[mode]
                updates += [*tabs[mode].controls.updates(info), *tabs[mode].networks.updates(info),
                            checkpoints.refreshed(info), styles, *hires.updates(info, tabs[mode].inputs)]
            return updates

        def refresh_status(*chosen):
            return [gateway.status_line(mode, model) for mode, model in zip(modes, chosen)]

        for tab in tabs.values():
            wire_checkpoint(gateway, tab)
            controlnet.wire(demo, backends[tab.mode], tab.controlnet, tab.image_target)

        demo.load(refresh_all, None, status_outputs + range_outputs, api_visibility="private")
        demo.load(wire_extras(gateway, extras, concurrency), None, extras.upscalers, api_visibility="private")
        # Closing (or reloading) the page cancels what it was waiting for.
        demo.unload(interrupter(gateway, None))
        gr.Timer(10).tick(refresh_status, model_inputs, status_outputs, api_visibility="private")
    return demo


def wire_checkpoint(gateway: Gateway, tab: Tab) -> None:
    """The tab's checkpoint dropdown names its choice in the status line; 🔄 reads GetInfo again (a
    model added, a hash computed since), keeping the choice while the service still offers it, and
    refreshes the LoRA and embedding cards."""
    def chosen(model):
        return gateway.status_line(tab.mode, model)

    def refresh(model):
        info = gateway.backends[tab.mode].info()
        update = checkpoints.refreshed(info, model)
        return update, gateway.status_line(tab.mode, update.get("value")), *tab.networks.updates(info)

    tab.model.change(chosen, tab.model, tab.status, api_visibility="private")
    tab.model_refresh.click(refresh, tab.model, [tab.model, tab.status, *tab.networks.refreshed],
                            api_visibility="private")


def make_backends(config: GatewayConfig) -> dict[str, ModeBackend]:
    return {mode: ModeBackend(mode, config.addresses[mode], config.timeout_s, config.retries, config.security,
                              config.answer_s) for mode in MODES}


def make_outputs(config: GatewayConfig) -> OutputStore | None:
    return OutputStore(config.outputs_dir) if config.save else None


def make_gateway(config: GatewayConfig) -> Gateway:
    """The Gateway the configuration describes: a backend per mode, the saved outputs, the previews."""
    hub = Hub(make_backends(config), outputs=make_outputs(config), preview_every=config.preview_every,
              styles=StyleBook(config.styles))
    return Gateway(hub, preview_s=config.preview_ms / 1000)


def launch(demo, config: GatewayConfig, *, block: bool = True, hub: Hub | None = None):
    """Serve the UI and, given the hub, the A1111 API (`/sdapi/v1`, unless --no-api) on the same port;
    block: until the server stops."""
    auth = (config.username, config.password) if config.username else None
    demo.queue(default_concurrency_limit=config.concurrency)
    # No allowed_paths: the outputs folder is never served as it is (History copies the images it lists
    # into Gradio's cache), so nothing else an operator keeps there can be fetched.
    result = demo.launch(
        server_name=config.host,
        server_port=config.port,
        auth=auth,
        max_file_size=int(config.max_upload_mb * 1024 * 1024),
        show_error=False,  # only gr.Error messages (plain words) reach the browser, never an exception's text
        ssr_mode=False,
        quiet=True,
        prevent_thread_lock=True,
        head=shortcuts.HEAD,  # Ctrl+Enter in a prompt box generates
        app_kwargs={"docs_url": "/docs"},  # the OpenAPI page: the API's routes
    )
    if hub is not None:
        # A1111 adds its API to Gradio's app after launching it, the same way.
        a1111.mount(demo.app, hub, config)
    if block:
        demo.block_thread()
    return result


def main(argv=None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(argv)
    gateway = make_gateway(config)
    demo = build_ui(gateway, concurrency=config.concurrency)
    print(f"gateway: http://{config.host}:{config.port}  (" + ", ".join(
        f"{m} -> {a}" for m, a in config.addresses.items()) + ")"
          + (f"; A1111 API at /sdapi/v1{' (HTTP Basic)' if config.api_credentials else ''}" if config.api else ""),
          flush=True)
    # SIGTERM (docker stop, Kubernetes) ends the process as Ctrl-C does, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        launch(demo, config, hub=gateway.hub)
    finally:
        demo.close()
        gateway.close()
    return 0
