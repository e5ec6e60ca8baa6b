"""The History tab: saved outputs newest first, a page at a time; a picked one's parameters, sent to a tab.

The outputs folder itself is never served (it may hold anything an operator puts there): each image a
page shows is copied into Gradio's cache, which is what the browser fetches.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import gradio as gr
from gradio import processing_utils, utils

from imagegen.v1.contract import MODES

from .outputs import EXTRAS, OutputStore, page_of
from .png_info import InfoView, describe

PAGE_SIZE = 24
ALL = "all"

log = logging.getLogger("gateway")


def served(path: str) -> str | None:
    """A saved image's copy in Gradio's cache (files there are the ones the browser may fetch); None
    when it cannot be read (removed meanwhile, unreadable), so one odd file never fails a page."""
    try:
        return processing_utils.save_file_to_cache(path, cache_dir=utils.get_upload_folder())
    except OSError as err:
        log.info("history: %s not shown: %s", path, err)
        return None


@dataclass
class HistoryTab:
    tab: object
    mode: object  # dropdown: all, or one mode
    page: object  # number, 1-based
    refresh: object
    previous: object
    next: object
    summary: object  # "page 1 of 3, 52 images"
    gallery: object
    names: object  # gr.State: the names (mode/day/file) on the page shown
    picked: object  # textbox: the file name picked (no folders: it is not a path to type anywhere)
    chosen: object  # gr.State: the picked one's name (mode/day/file), what "Send to" reads
    view: InfoView
    send: dict  # target mode -> button


def build_history(store: OutputStore | None) -> HistoryTab:
    """Lay out the tab (inside an open gr.Tabs)."""
    with gr.Tab("History", id="history", elem_id="tab-history") as tab:
        if store is None:
            gr.Markdown("Saving outputs is off on this gateway (`--no-save`): there is no history to show.")
        with gr.Row():
            folders = [(m.label, m.name) for m in MODES.values()] + [("Extras", EXTRAS)]
            mode = gr.Dropdown([(ALL, ALL)] + folders, value=ALL, label="Mode", elem_id="history-mode", scale=2)
            page = gr.Number(1, precision=0, minimum=1, label="Page", elem_id="history-page", scale=1)
            previous = gr.Button("< Newer", size="sm", elem_id="history-previous", scale=1)
            following = gr.Button("Older >", size="sm", elem_id="history-next", scale=1)
            refresh = gr.Button("Refresh", size="sm", elem_id="history-refresh", scale=1)
        summary = gr.Markdown(elem_id="history-summary")
        gallery = gr.Gallery(label="Saved outputs, newest first", type="filepath", columns=6, height="auto",
                             interactive=False, allow_preview=False, elem_id="history-gallery")
        names, chosen = gr.State([]), gr.State("")
        with gr.Row():
            with gr.Column(scale=1):
                picked = gr.Textbox(label="Picked", interactive=False, elem_id="history-picked")
                with gr.Row():
                    send = {m.name: gr.Button(f"Send to {m.label}", size="sm", elem_id=f"history-to-{m.name}")
                            for m in MODES.values()}
            with gr.Column(scale=2):
                view = InfoView.build("history")
    return HistoryTab(tab, mode, page, refresh, previous, following, summary, gallery, names, picked, chosen,
                      view, send)


def show_page(store: OutputStore | None, mode: str, page) -> tuple[list, int, str, list]:
    """(gallery items, the page shown, its summary, the names on it) for `mode` (or all)."""
    if store is None:
        return [], 1, "", []
    listing = store.listing(None if mode in (None, ALL) else mode)
    items, page, pages = page_of(listing, page, PAGE_SIZE)
    if not listing:
        return [], 1, "No saved outputs yet.", []
    shown = [(copy, o) for o in items for copy in [served(o.path)] if copy is not None]
    gallery = [(copy, f"{o.mode} #{o.number}" + ("" if o.mode == EXTRAS else f" seed {o.seed}"))  # upscaled: no seed
               for copy, o in shown]
    summary = f"Page {page} of {pages} - {len(listing)} image{'s' if len(listing) != 1 else ''}, newest first"
    return gallery, page, summary, [o.name for _copy, o in shown]


def pick(store: OutputStore | None, names: list, index: int) -> tuple[str, str, str, dict]:
    """(file name, name, infotext, parsed fields) of the picked image: the one file opened."""
    if store is None or not names or index is None or not 0 <= index < len(names):
        return "", "", "", {}
    name = names[index]
    path = store.find(name)
    if path is None:
        return os.path.basename(name), name, "", {"error": "the file is gone"}
    text, fields = describe(path)
    return os.path.basename(name), name, text, fields
