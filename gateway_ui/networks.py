"""A tab's extra networks, as A1111's cards: the service's LoRAs and textual-inversion embeddings
(GetInfo's `loras` and `embeddings`), each a card that writes itself into a prompt.

Clicking a LoRA card writes `<lora:NAME:WEIGHT>` at the end of the prompt, WEIGHT from the panel's slider
(A1111's default multiplier, 1); clicking it again with the tag there removes it, as A1111's card toggles
it, unless the slider has moved since: then the tag's weight becomes the slider's. An embedding card
writes the embedding's name (at weight 1) or A1111's attention form `(NAME:WEIGHT)`, into the prompt or
the negative prompt, and toggles the same way. The tags in the prompt are what a request carries: the
cards are no API input. The text editing is pure functions (below); `panel` lays the cards out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import gradio as gr

from imagegen.v1 import imagegen_pb2 as pb
from imagegen.v1.contract import MAX_LORA_WEIGHT

DEFAULT_WEIGHT = 1.0  # A1111's extra_networks_default_multiplier
SEPARATOR = " "  # A1111's extra_networks_add_text_separator
# The embedding slider's range: A1111's attention weights people use; a typed prompt may go further.
MAX_EMBEDDING_WEIGHT = 2.0
NO_LORAS = "No LoRAs: start the service with `--lora-dir DIR` (a folder of `NAME.safetensors` files)."
NO_EMBEDDINGS = ("No embeddings: start the service with `--embeddings-dir DIR` "
                 "(A1111's `.pt` or `.safetensors` files).")
LORA_HINT = ("Click a card: `<lora:name:weight>` goes into the prompt; click again to take it out, "
             "or to set the weight after moving the slider.")
EMBEDDING_HINT = ("Click a card: its name goes into the prompt chosen (`(name:weight)` at a weight other "
                  "than 1); click again to take it out.")
PROMPTS = ["Prompt", "Negative prompt"]  # where an embedding card writes

# <lora:NAME> or <lora:NAME:REST>; REST is the weight (A1111 allows more, which the service refuses).
_LORA_TAG = re.compile(r"<lora:([^<>:]*)(?::([^<>]*))?>")


def weight_text(weight: float) -> str:
    """A weight as A1111's cards write it (a JavaScript number): 1, 0.5, -1.25; two decimals at most, so a
    slider's float noise never reaches the prompt."""
    value = round(float(weight), 2) + 0.0  # + 0.0: -0.0 reads 0
    return f"{value:g}"


def _same_weight(text: str | None, weight: float) -> bool:
    """Whether a tag's weight text (None: left out, which means 1) is `weight`."""
    try:
        found = float(text) if text is not None else 1.0
    except ValueError:
        return False
    return math.isfinite(found) and round(found, 2) == round(float(weight), 2)


def _append(prompt: str, text: str) -> str:
    body = prompt.rstrip()
    return f"{body}{SEPARATOR}{text}" if body else text


def _cut(prompt: str, spans: list[tuple[int, int]]) -> str:
    """The prompt without the spans, each with the spaces before it (at the prompt's start: after it)."""
    out, last = [], 0
    for start, end in spans:
        head = prompt[last:start]
        trimmed = head.rstrip(" ")
        if not trimmed and not any(out):  # at the prompt's start: the spaces after it go instead
            while end < len(prompt) and prompt[end] == " ":
                end += 1
        out.append(trimmed)
        last = end
    out.append(prompt[last:])
    return "".join(out)


def toggle_lora(prompt: str | None, name: str, weight: float = DEFAULT_WEIGHT) -> str:
    """The prompt after a click on LoRA `name`'s card at `weight`: its tag added at the end; taken out
    when the prompt has it at that weight already (every tag of that name); its weight set to `weight`
    when the prompt has it at another."""
    prompt = prompt or ""
    found = [match for match in _LORA_TAG.finditer(prompt) if match.group(1).strip() == name]
    if not found:
        return _append(prompt, f"<lora:{name}:{weight_text(weight)}>")
    if all(_same_weight(match.group(2), weight) for match in found):
        return _cut(prompt, [match.span() for match in found])
    return _replace(prompt, found, f"<lora:{name}:{weight_text(weight)}>")


def _replace(prompt: str, matches: list, text: str) -> str:
    out, last = [], 0
    for match in matches:
        out += [prompt[last:match.start()], text]
        last = match.end()
    return "".join(out) + prompt[last:]


def embedding_text(name: str, weight: float = DEFAULT_WEIGHT) -> str:
    """What an embedding card writes: its name, or `(name:weight)` at a weight other than 1."""
    return name if _same_weight(None, weight) else f"({name}:{weight_text(weight)})"


# Characters that continue a word of an embedding's name: its name found as a whole word only.
_WORD = r"[\w\-.]"


def _embedding_uses(prompt: str, name: str) -> list[tuple[re.Match, str | None]]:
    """Where the prompt uses embedding `name`: (match, its weight text; None for the bare name)."""
    weighted = [(m, m.group(1)) for m in re.finditer(rf"\({re.escape(name)}:([^()]*)\)", prompt)]
    inside = [m.span() for m, _ in weighted]
    bare = [(m, None) for m in re.finditer(rf"(?<!{_WORD}){re.escape(name)}(?!{_WORD})", prompt)
            if not any(start <= m.start() < end for start, end in inside)]
    return sorted(weighted + bare, key=lambda use: use[0].start())


def toggle_embedding(prompt: str | None, name: str, weight: float = DEFAULT_WEIGHT) -> str:
    """The prompt after a click on embedding `name`'s card at `weight`, as toggle_lora does a LoRA's:
    added at the end, taken out where it is there at that weight, else written at `weight`."""
    prompt = prompt or ""
    found = _embedding_uses(prompt, name)
    if not found:
        return _append(prompt, embedding_text(name, weight))
    if all(_same_weight(text, weight) for _match, text in found):
        return _cut(prompt, [match.span() for match, _text in found])
    return _replace(prompt, [match for match, _text in found], embedding_text(name, weight))


def lora_cards(info: pb.ServiceInfo) -> list[list[str]]:
    return [[name] for name in info.loras]


def embedding_cards(info: pb.ServiceInfo) -> tuple[list[list[str]], list[str]]:
    """(the cards' samples, their labels): every embedding of the service, those the default model did not
    load (another family's, as A1111 skips them) said so; a prompt naming one there has plain text."""
    embeddings = sorted(info.embeddings, key=lambda e: (not e.loaded, e.name.lower()))
    return ([[e.name] for e in embeddings],
            [e.name if e.loaded else f"{e.name} (not for the default model)" for e in embeddings])


@dataclass
class Networks:
    """One tab's panel: the cards, their weight sliders, and notes saying what to do (or how to get some)."""

    loras: object  # gr.Dataset of the LoRA names
    lora_weight: object
    lora_note: object
    embeddings: object  # gr.Dataset of the embedding names
    embedding_weight: object
    embedding_target: object  # which prompt an embedding card writes into
    embedding_note: object

    @property
    def refreshed(self) -> list:
        """The components a fresh GetInfo updates, in the order of `updates`."""
        return [self.loras, self.lora_note, self.embeddings, self.embedding_note]

    @staticmethod
    def updates(info: pb.ServiceInfo) -> list:
        samples, labels = embedding_cards(info)
        return [gr.update(samples=lora_cards(info), visible=bool(info.loras)),
                gr.update(value=lora_note(info)),
                gr.update(samples=samples, sample_labels=labels, visible=bool(samples)),
                gr.update(value=embedding_note(samples))]


def lora_note(info: pb.ServiceInfo) -> str:
    return LORA_HINT if info.loras else NO_LORAS


def embedding_note(samples: list) -> str:
    return EMBEDDING_HINT if samples else NO_EMBEDDINGS


def _cards(samples: list, mode: str, kind: str, labels: list[str] | None = None):
    return gr.Dataset(components=["textbox"], samples=samples, sample_labels=labels, label=None,
                      show_label=False, layout="gallery", samples_per_page=50, visible=bool(samples),
                      elem_id=f"{mode}-{kind}-cards")


def _weight_slider(mode: str, kind: str, label: str, least: float, most: float):
    return gr.Slider(least, most, value=DEFAULT_WEIGHT, step=0.05, label=label,
                     elem_id=f"{mode}-{kind}-weight")


def panel(mode: str, info: pb.ServiceInfo, prompt, negative) -> Networks:
    """Lay out the tab's "Networks" panel (LoRA, Textual Inversion) and wire its cards to the prompts."""
    samples, labels = embedding_cards(info)
    with gr.Accordion("Networks: LoRA, Textual Inversion", open=False, elem_id=f"{mode}-networks"):
        with gr.Tabs():
            with gr.Tab("LoRA", elem_id=f"{mode}-networks-lora"):
                lora_help = gr.Markdown(lora_note(info), elem_id=f"{mode}-lora-note")
                loras = _cards(lora_cards(info), mode, "lora")
                lora_weight = _weight_slider(mode, "lora", "LoRA weight", -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)
            with gr.Tab("Textual Inversion", elem_id=f"{mode}-networks-embeddings"):
                embedding_help = gr.Markdown(embedding_note(samples), elem_id=f"{mode}-embedding-note")
                embeddings = _cards(samples, mode, "embedding", labels)
                with gr.Row():
                    embedding_weight = _weight_slider(mode, "embedding", "Embedding weight", 0,
                                                      MAX_EMBEDDING_WEIGHT)
                    # A1111 writes into the prompt box last focused; here it is said.
                    target = gr.Radio(PROMPTS, value=PROMPTS[0], label="Into",
                                      elem_id=f"{mode}-embedding-target")

    def click_lora(card, weight, text):
        return toggle_lora(text, card[0], weight) if card else gr.update()

    def click_embedding(card, weight, into, text, negative_text):
        if not card:
            return gr.update(), gr.update()
        if into == PROMPTS[1]:
            return gr.update(), toggle_embedding(negative_text, card[0], weight)
        return toggle_embedding(text, card[0], weight), gr.update()

    loras.click(click_lora, [loras, lora_weight, prompt], prompt, api_visibility="private")
    embeddings.click(click_embedding, [embeddings, embedding_weight, target, prompt, negative],
                     [prompt, negative], api_visibility="private")
    return Networks(loras, lora_weight, lora_help, embeddings, embedding_weight, target, embedding_help)
