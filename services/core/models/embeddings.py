"""Textual-inversion embeddings: the operator's folder of them, read at start, loaded into models they fit.

Every `NAME.pt`, `NAME.safetensors` or `NAME.bin` in `--embeddings-dir` (subfolders too, as A1111 walks
them) is the embedding NAME, in any of the formats A1111 reads: its own `.pt` (`string_to_param`, with
`step` and the checkpoint it was trained on), a `.safetensors` of one tensor (`emb_params`, or diffusers'
`<token>`), diffusers' `learned_embeds.bin`, or SDXL's pair `clip_l` + `clip_g`.

Loading into a model is diffusers' own `load_textual_inversion` (SDXL: once per text encoder): the
tokenizer gets NAME (and NAME_1, NAME_2... for a multi-vector embedding's other vectors) and the text
encoder their rows, so a prompt uses it by writing NAME (in any case), which prompts.chunk_tokens expands
to all its tokens; weights (`(NAME:1.2)`) apply to every vector, and both
engines encode through it. A file that does not fit a model (another family's width, a name its
tokenizer already has) is skipped for that model with a log line, as A1111 skips it: the name is then
plain text in that model's prompts.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = (".pt", ".safetensors", ".bin")
SDXL_PARTS = ("clip_l", "clip_g")  # SDXL's files: the first text encoder's vectors, then the second's
FAMILY_OF_WIDTH = {768: "sd1", 1024: "sd2"}  # one-encoder vectors' widths in the real models


@dataclass(frozen=True, eq=False)
class Embedding:
    """One file's vectors and what A1111 reports of it."""

    name: str
    path: Path
    parts: dict = field(repr=False)  # "" -> (vectors, width) tensor; SDXL: clip_l and clip_g
    hash: str  # A1111's short hash: the first 12 hex digits of the file's sha256
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def vectors(self) -> int:
        return next(iter(self.parts.values())).shape[0]

    @property
    def shape(self) -> int:
        """A1111's `shape`: the vectors' width (SDXL: both parts' widths added)."""
        return sum(tensor.shape[-1] for tensor in self.parts.values())

    @property
    def family(self) -> str:
        if set(self.parts) == set(SDXL_PARTS):
            return "sdxl"
        return FAMILY_OF_WIDTH.get(self.shape, "")


def _vectors(data) -> dict:
    """The tensors of a loaded file by part, each (vectors, width), as A1111's create_embedding_from_data
    tells the formats apart. ValueError for anything else."""
    import torch

    if not isinstance(data, dict) or not data:
        raise ValueError("it holds no embedding")
    if "string_to_param" in data:  # A1111's own .pt
        params = data["string_to_param"]
        if not isinstance(params, dict) or len(params) != 1:
            raise ValueError("its string_to_param holds more than one term")
        parts = {"": next(iter(params.values()))}
    elif all(part in data for part in SDXL_PARTS):
        parts = {part: data[part] for part in SDXL_PARTS}
    elif len(data) == 1:  # emb_params, or diffusers' {token: vectors}
        parts = {"": next(iter(data.values()))}
    else:
        raise ValueError(f"it is not an embedding (keys: {', '.join(sorted(map(str, data))[:5])})")
    out = {}
    for part, tensor in parts.items():
        if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2) or not tensor.numel():
            raise ValueError("its vectors are not a (vectors, width) tensor")
        # A copy, float32: a memory-mapped file must not change the vectors under a loaded model.
        out[part] = tensor.detach().reshape(-1, tensor.shape[-1]).to(torch.float32, copy=True)
    if len({tensor.shape[0] for tensor in out.values()}) != 1:
        raise ValueError("its clip_l and clip_g hold different numbers of vectors")
    return out


def _text(value) -> str | None:
    return None if value is None else str(value)


def read_file(path: Path) -> Embedding:
    """The embedding in one file (read by diffusers' own state-dict loader: safetensors, or torch.load
    with weights_only, so a pickle cannot run code). ValueError or OSError when it is not one."""
    from diffusers.models.model_loading_utils import load_state_dict

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        data = load_state_dict(str(path))
    except Exception as exc:  # noqa: BLE001 - a loader's failure of any kind: not an embedding
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{type(exc).__name__}: {first_line}") from None
    step = data.get("step") if isinstance(data, dict) else None
    return Embedding(path.stem, path, _vectors(data), digest[:12],
                     step=step if isinstance(step, int) else None,
                     sd_checkpoint=_text(data.get("sd_checkpoint")),
                     sd_checkpoint_name=_text(data.get("sd_checkpoint_name")))


def read_folder(folder: Path | None) -> dict[str, Embedding]:
    """name -> embedding of every readable file in the folder (none without one); each file that is not
    an embedding, or repeats a name, is skipped with a log line."""
    if folder is None:
        return {}
    try:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    except OSError as exc:
        log.warning("--embeddings-dir %s cannot be read: %s", folder, exc)
        return {}
    found: dict[str, Embedding] = {}
    for path in paths:
        if path.stat().st_size == 0:
            continue  # as A1111: an empty file is not worth a warning
        if path.stem in found:
            log.warning("embedding file %s is skipped: %s has the name %r already", path,
                        found[path.stem].path, path.stem)
            continue
        try:
            found[path.stem] = read_file(path)
        except (OSError, ValueError) as exc:
            log.warning("embedding file %s is skipped: %s", path, exc)
    log.info("textual-inversion embeddings read from %s: %s", folder, ", ".join(found) or "none")
    return found


def _targets(pipe, embedding: Embedding) -> list[tuple[object, object, object]]:
    """(vectors, tokenizer, text encoder) to load for the embedding into `pipe`; ValueError naming why
    it does not fit (A1111's expected-shape check: the text encoders' widths)."""
    from ..prompts import text_encoders

    pairs = text_encoders(pipe)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    widths = [encoder.get_input_embeddings().weight.shape[-1] for _tokenizer, encoder in pairs]
    keys = SDXL_PARTS if sdxl and len(pairs) == 2 else ("",)  # a refiner (clip_g only) takes neither kind
    if set(embedding.parts) != set(keys) or (sdxl and len(pairs) != 2):
        has = ("an SDXL embedding (clip_l + clip_g)" if embedding.family == "sdxl"
               else "a one-encoder embedding")
        raise ValueError(f"it is {has}, and the model has {len(pairs)} text encoder(s)")
    got = [embedding.parts[key].shape[-1] for key in keys]
    if got != widths:
        raise ValueError(f"its vectors are {'+'.join(map(str, got))} wide, the model's text encoder(s) take "
                         f"{'+'.join(map(str, widths))} (an embedding of another model family)")
    return [(embedding.parts[key], tokenizer, encoder) for key, (tokenizer, encoder) in zip(keys, pairs)]


def load_into(pipe, embeddings: dict[str, Embedding], model: str) -> dict[str, Embedding]:
    """Load each embedding that fits `pipe` (the model `model`) into its tokenizer(s) and text encoder(s);
    those that do not are skipped with a log line. Returns the ones loaded."""
    loaded, skipped = {}, []
    for name, embedding in embeddings.items():
        try:
            targets = _targets(pipe, embedding)
            for _vectors_, tokenizer, _encoder in targets:
                if name in tokenizer.get_vocab() or f"{name}_1" in tokenizer.get_vocab():
                    raise ValueError(f"the model's tokenizer has {name!r} already (rename the file to use "
                                     "it)")
            for vectors, tokenizer, encoder in targets:
                pipe.load_textual_inversion(vectors, token=name, tokenizer=tokenizer, text_encoder=encoder)
        except Exception as exc:  # noqa: BLE001 - a file that does not fit is skipped; the service serves on
            skipped.append(name)
            log.warning("embedding %s is skipped for model %s: %s", name, model, exc)
            continue
        loaded[name] = embedding
    if embeddings:
        log.info("embeddings loaded into model %s: %s%s", model, ", ".join(loaded) or "none",
                 f" (skipped: {', '.join(skipped)})" if skipped else "")
    return loaded


def used(pipe, loaded: dict[str, Embedding], texts) -> tuple[tuple[str, str], ...]:
    """(name, short hash) of each loaded embedding that the texts use, in name order: what infotext's
    `TI hashes` records. Read from the model's own tokenizer, which splits the names out as it encodes
    (by id: its token strings come back lower-cased)."""
    if not loaded:
        return ()
    tokenizer = pipe.tokenizer if getattr(pipe, "tokenizer", None) is not None else pipe.tokenizer_2
    ids = {i for text in texts if text
           for i in tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]}
    return tuple((name, loaded[name].hash) for name in sorted(loaded)
                 if tokenizer.convert_tokens_to_ids(name) in ids)
