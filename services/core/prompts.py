"""Prompts as AUTOMATIC1111 reads them: attention weights, BREAK, LoRA tags, 75-token chunks, clip skip.

    a (red:1.3) fox, ((sharp)), [blurry] BREAK at dawn <lora:film:0.6>

Parsing (`parse_prompt`) is pure Python, so the checks run it before any model work. Encoding
(`encode_text`, `encode_pair`) is the one text encoding both engines use:

- the text is split into 75-token chunks (a BREAK ends one early; near the end of a full chunk the
  text after the last comma moves to the next one, as A1111 does), each wrapped in BOS/EOS and padded
  to 77, encoded alone and concatenated along the sequence axis: nothing is cut;
- each token's embedding is multiplied by its weight, then the chunk is rescaled so its mean is the
  unweighted one (A1111's mean restoration), so `(word:1.0)` is exactly `word`;
- a plain prompt of at most 75 tokens gives exactly diffusers' own `encode_prompt` result;
- under guidance the shorter of prompt and negative prompt is brought to the longer's chunk count:
  repeated where that count is a multiple of its own, else padded with the empty prompt's chunk
  (A1111's pad_cond); each prompt is at most `max_chunks` chunks, checked before admission;
- SDXL: each text encoder is chunked and weighted on its own (penultimate layer, as its pipeline),
  the outputs concatenated along the features; the pooled embedding is the second encoder's on the
  first chunk, unweighted (A1111, ComfyUI).

Why not compel: it reads its own syntax (`word++`, `(word)1.3`), not `(word:1.3)` / `[word]` / BREAK,
and weights by interpolating from the empty prompt's embedding (down-weights by blending with the
prompt without the word) instead of A1111's multiply-and-restore-mean, so its images differ from
A1111's for the same prompt. The parser below follows A1111's own rules, token by token.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidArgument

if TYPE_CHECKING:
    import torch

CHUNK_TOKENS = 75  # tokens of text per chunk; with BOS and EOS the encoder's 77
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack: how far back a comma may end a full chunk
ROUND, SQUARE = 1.1, 1 / 1.1  # what one (…) or […] multiplies by
# The largest effective weight (nested weights multiplied) a run of text may have, either sign. A1111 has
# none; past float32's range the embeddings become inf and the image black, and far below it a weight
# drowns every other token (A1111 users write 0.5..2).
MAX_ATTENTION_WEIGHT = 100.0

_LORA_TAG = re.compile(r"<lora:([^<>]*)>")
# One lexical unit of A1111's attention syntax: an escape, a bracket, an explicit weight closing a
# round bracket, plain text, or a lone ':' or '\' (A1111's own units, with a stricter number).
_UNIT = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)|\)|\]|[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt's text as (text, weight) runs, split into sections by BREAK; its LoRA tags apart."""

    sections: tuple[tuple[tuple[str, float], ...], ...]
    loras: tuple[tuple[str, float], ...] = ()

    @property
    def weighted(self) -> bool:
        return any(weight != 1.0 for section in self.sections for _text, weight in section)


def take_lora_tags(text: str) -> tuple[str, tuple[tuple[str, float], ...]]:
    """The text without its `<lora:name:weight>` tags (weight 1 when left out), and the tags in order.
    Raises ValueError for a tag without a name, or whose weight is not one finite number."""
    loras = []
    for match in _LORA_TAG.finditer(text):
        name, *weights = match.group(1).split(":")
        name = name.strip()
        if not name:
            raise ValueError(f"{match.group(0)!r} names no LoRA")
        if len(weights) > 1:
            raise ValueError(f"{match.group(0)!r} has {len(weights)} weights; give one: <lora:{name}:0.8>")
        try:
            weight = float(weights[0]) if weights else 1.0
        except ValueError:
            raise ValueError(f"{match.group(0)!r}: the weight {weights[0]!r} is not a number") from None
        if not math.isfinite(weight):
            raise ValueError(f"{match.group(0)!r}: the weight must be a finite number")
        loras.append((name, weight))
    return _LORA_TAG.sub("", text), tuple(loras)


def lora_tags(loras) -> str:
    """(name, weight) pairs as A1111's tags, each after a space (" <lora:film:0.6>"): what infotext writes
    after a prompt for the LoRAs a request named in its field."""
    return "".join(f" <lora:{name}:{str(weight).removesuffix('.0')}>" for name, weight in loras)


def lora_name_problem(name: str) -> str | None:
    """Why `name` cannot be a LoRA's name in a tag that reads back as the same name (None: it can). Beyond
    the tag's own `<`, `>` and `:`, infotext's `Lora hashes` list splits at `,` and its lines at line
    breaks, and both readers (take_lora_tags, the client's prompt_lora_names) strip the name."""
    if name != name.strip():
        return "it starts or ends with a space"
    bad = sorted({c for c in name if c in "<>:," or not c.isprintable()})
    if bad:
        return f"it contains {' '.join(repr(c) for c in bad)}, which a <lora:name:weight> tag cannot carry"
    return None


def parse_attention(text: str) -> tuple[tuple[tuple[str, float], ...], ...]:
    """A1111's attention syntax: (x) x1.1, [x] /1.1, (x:w) xw, nesting multiplies; \\( \\) \\[ \\] \\\\ are
    literal; a bracket never closed still applies to the rest, one closed but never opened is literal;
    BREAK (a word of its own, in capitals) starts a new section. Adjacent runs of equal weight merge, so
    `a (fox:1.0)` is the one run `a fox`."""
    runs: list[list] = []  # [text, weight], or None for a BREAK
    rounds: list[int] = []  # where each open bracket's runs start
    squares: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in runs[start:]:
            if run is not None:
                run[1] *= factor

    for match in _UNIT.finditer(text):
        unit, weight = match.group(0), match.group(1)
        if unit.startswith("\\"):
            runs.append([unit[1:], 1.0])  # a lone backslash drops, as in A1111
        elif unit == "(":
            rounds.append(len(runs))
        elif unit == "[":
            squares.append(len(runs))
        elif weight is not None and rounds:
            multiply(rounds.pop(), float(weight))
        elif unit == ")" and rounds:
            multiply(rounds.pop(), ROUND)
        elif unit == "]" and squares:
            multiply(squares.pop(), SQUARE)
        else:
            for index, part in enumerate(_BREAK.split(unit)):
                if index:
                    runs.append(None)
                runs.append([part, 1.0])
    for start in rounds:
        multiply(start, ROUND)
    for start in squares:
        multiply(start, SQUARE)

    sections, current = [], []
    for run in runs + [None]:
        if run is None:
            sections.append(tuple((text, weight) for text, weight in current if text))
            current = []
        elif current and current[-1][1] == run[1]:
            current[-1] = (current[-1][0] + run[0], run[1])
        else:
            current.append((run[0], run[1]))
    return tuple(sections)


def parse_prompt(text: str) -> ParsedPrompt:
    """The prompt's weighted runs and LoRA tags. ValueError for a malformed tag, or for text whose
    effective weight is not within -MAX_ATTENTION_WEIGHT..MAX_ATTENTION_WEIGHT (NaN and inf included)."""
    rest, loras = take_lora_tags(text)
    sections = parse_attention(rest)
    for section in sections:
        for run, weight in section:
            if not abs(weight) <= MAX_ATTENTION_WEIGHT:
                shown = repr(run) if len(run) <= 20 else repr(run[:20]) + "..."
                bound = f"{-MAX_ATTENTION_WEIGHT:g}..{MAX_ATTENTION_WEIGHT:g}"
                raise ValueError(f"the text {shown} has the weight {weight:.4g}, outside {bound} "
                                 "(nested weights multiply)")
    return ParsedPrompt(sections, loras)


# --- tokens


@dataclass(frozen=True)
class Chunk:
    ids: tuple[int, ...]  # BOS, up to 75 tokens, EOS, padding: 77 in all
    weights: tuple[float, ...]  # one per id; 1.0 for BOS, EOS and padding
    length: int  # BOS + tokens + EOS: the ids an attention mask keeps


def embedding_groups(tokenizer) -> dict[int, tuple[int, ...]]:
    """first token id -> all token ids, of each multi-vector textual-inversion embedding loaded into the
    tokenizer (diffusers' load_textual_inversion names them NAME, NAME_1, NAME_2...; models/embeddings.py).
    The ids are expanded here rather than by diffusers' maybe_convert_prompt, which replaces the name in the
    text case-sensitively: `easynegative` for a file EasyNegative.pt would get one vector of its eight."""
    added = tokenizer.added_tokens_encoder
    groups = {}
    for token, token_id in added.items():
        ids = [token_id]
        while f"{token}_{len(ids)}" in added:
            ids.append(added[f"{token}_{len(ids)}"])
        if len(ids) > 1:
            groups[token_id] = tuple(ids)
    return groups


def chunk_tokens(parsed: ParsedPrompt, tokenizer) -> list[Chunk]:
    """The parsed prompt as the encoder's 77-token chunks, as A1111 makes them. A multi-vector embedding's
    name becomes all its tokens, and is never split between chunks (it starts the next one, as in A1111)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    comma = tokenizer.get_vocab().get(",</w>")
    chunks: list[Chunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1
    groups = embedding_groups(tokenizer)

    def close() -> None:
        nonlocal tokens, weights, last_comma
        fill = CHUNK_TOKENS - len(tokens)
        # After EOS, the tokenizer's padding: diffusers' (and A1111's, which pads SD1 with EOS = pad).
        chunks.append(Chunk(tuple([bos, *tokens, eos] + [pad] * fill), tuple([1.0, *weights, 1.0] + [1.0] * fill),
                            len(tokens) + 2))
        tokens, weights, last_comma = [], [], -1

    for index, section in enumerate(parsed.sections):
        if index:
            close()  # BREAK
        texts = [text for text, _weight in section]
        ids = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"] if texts else []
        for run_ids, (_text, weight) in zip(ids, section):
            for token in [i for run_id in run_ids for i in groups.get(run_id, (run_id,))]:
                if token == comma:
                    last_comma = len(tokens)
                elif len(tokens) == CHUNK_TOKENS and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                    # A full chunk with a comma near its end: the words after the comma start the next chunk.
                    cut = last_comma + 1
                    moved, moved_weights = tokens[cut:], weights[cut:]
                    tokens, weights = tokens[:cut], weights[:cut]
                    close()
                    tokens, weights = moved, moved_weights
                if tokens and len(tokens) + len(groups.get(token, (token,))) > CHUNK_TOKENS:
                    close()
                tokens.append(token)
                weights.append(weight)
    if tokens or not chunks:
        close()
    return chunks


def text_encoders(pipe) -> list[tuple[object, object]]:
    """(tokenizer, text encoder) pairs, in the order their outputs are concatenated: SDXL's two (the
    refiner has only the second), or the one of SD 1.x/2.x."""
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return [(tokenizer, encoder) for tokenizer, encoder in pairs if encoder is not None]


def is_sdxl(pipe) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def chunk_count(pipe, text: str) -> int:
    """How many 77-token chunks `text` encodes to with this pipeline's tokenizer."""
    return tokenizer_chunks(text_encoders(pipe)[0][0], text)


def tokenizer_chunks(tokenizer, text: str) -> int:
    """How many 77-token chunks `text` encodes to with `tokenizer` (a pipeline's first)."""
    return len(chunk_tokens(parse_prompt(text), tokenizer))


def common_chunks(positive: int, negative: int) -> int:
    """The chunk count a guided request's prompt and negative prompt are brought to: the longer's (pad_to).
    Never their least common multiple, which for coprime counts is their product."""
    return max(positive, negative)


def sequence_chunks(pipe, spec) -> int:
    """The chunks of a request's embeddings: the prompt's, and under guidance the longer of the prompt's
    and the negative's (common_chunks)."""
    positive = chunk_count(pipe, spec.prompt)
    if not spec.guided:
        return positive
    return common_chunks(positive, chunk_count(pipe, spec.negative_prompt))


def max_chunks(max_prompt_chars: int) -> int:
    """The most chunks a prompt may encode to: what max_prompt_chars of plain text can reach (a chunk
    holds at least 75 - COMMA_BACKTRACK tokens unless a BREAK ends it; a token is at least one character
    of ASCII), so only runs of BREAKs, or characters of several tokens each, reach it."""
    return max(1, math.ceil(max_prompt_chars / (CHUNK_TOKENS - COMMA_BACKTRACK)))


def check_chunks(pipe, spec, limit: int) -> int:
    """sequence_chunks, once each prompt is within `limit` chunks (InvalidArgument naming it otherwise):
    the sequence length every UNet call of the request attends over is bounded before admission."""
    return check_prompt_chunks(text_encoders(pipe)[0][0], spec, limit)


def check_prompt_chunks(tokenizer, spec, limit: int) -> int:
    """check_chunks with a model's (first) tokenizer: the chosen model's, which may not be loaded."""
    counts = {}
    for field, text in (("params.prompt", spec.prompt), ("params.negative_prompt", spec.negative_prompt)):
        counts[field] = tokenizer_chunks(tokenizer, text)
        if counts[field] > limit:
            raise InvalidArgument(field, f"encodes to {counts[field]} chunks of {CHUNK_TOKENS} tokens, over "
                                         f"the limit of {limit} (each BREAK starts a chunk)")
    if not spec.guided:
        return counts["params.prompt"]
    return common_chunks(*counts.values())


# --- embeddings


@dataclass(frozen=True)
class Encoded:
    """One text's embeddings: (1, 77 x chunks, D), and SDXL's pooled (1, P) or None."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // 77


# The mean restoration divides by the weighted chunk's mean: where a mean is this small against the
# values' own size it is rounding noise, and the rescale is skipped (the weights still apply).
MEAN_FLOOR = 1e-3


def emphasize(z: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """A1111's emphasis: each token's embedding times its weight, then the chunk rescaled so its mean is
    the unweighted mean. Unweighted chunks are returned as they are (bit for bit).

    Real text encoders' outputs have a mean well away from zero (A1111's arithmetic exactly); one whose
    outputs average to zero (an untrained final layer norm, as the embedded tiny model's) would be
    rescaled by noise over noise, to inf or NaN: there the rescale is skipped."""
    import torch

    if all(weight == 1.0 for weight in weights):
        return z
    original = z.float()
    scaled = original * torch.tensor(weights, dtype=torch.float32, device=z.device).reshape(1, -1, 1)
    floor = MEAN_FLOOR * original.abs().mean()
    before, after = original.mean(), scaled.mean()
    if before.abs() > floor and after.abs() > floor:
        scaled = scaled * (before / after)
    return scaled.to(z.dtype)


def _encode_chunk(encoder, chunk: Chunk, device, sdxl: bool, clip_skip: int):
    """(hidden states (1, 77, D), the projection's pooled output or None) of one chunk, as diffusers'
    encode_prompt computes them for 77 tokens."""
    import torch

    ids = torch.tensor([chunk.ids], device=device)
    if sdxl:
        # SDXL conditions on the penultimate layer by design; clip skip does not apply (A1111's default).
        out = encoder(ids, output_hidden_states=True)
        pooled = out[0] if out[0].ndim == 2 else None
        return out.hidden_states[-2], pooled
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = torch.tensor([[1] * chunk.length + [0] * (len(chunk.ids) - chunk.length)], device=device)
    if clip_skip <= 1:
        return encoder(ids, attention_mask=mask)[0], None
    # A1111's Clip skip N: layer -N's hidden state through the final layer norm (diffusers' clip_skip=N-1).
    hidden = encoder(ids, attention_mask=mask, output_hidden_states=True)[-1][-clip_skip]
    # transformers 5 moved the layer norm from `text_model` onto the model (diffusers 0.42 still looks
    # for `text_model`, so its own clip_skip fails there).
    return getattr(encoder, "text_model", encoder).final_layer_norm(hidden), None


def encode_text(pipe, text: str, clip_skip: int = 1) -> Encoded:
    """The text's embeddings, chunked and weighted as A1111 does (LoRA tags removed)."""
    import torch

    parsed = parse_prompt(text)
    device, sdxl = pipe._execution_device, is_sdxl(pipe)
    per_encoder, pooled, counts = [], None, set()
    for tokenizer, encoder in text_encoders(pipe):
        chunks = chunk_tokens(parsed, tokenizer)
        counts.add(len(chunks))
        outputs = []
        for index, chunk in enumerate(chunks):
            z, projected = _encode_chunk(encoder, chunk, device, sdxl, clip_skip)
            outputs.append(emphasize(z, chunk.weights))
            if index == 0 and projected is not None:
                pooled = projected  # the last encoder with a projection: SDXL's second
        per_encoder.append(torch.cat(outputs, dim=1))
    if len(counts) != 1:
        raise ValueError(f"the text encoders' tokenizers split the prompt into different chunk counts: {counts}")
    embeds = torch.cat(per_encoder, dim=-1)
    # The dtype diffusers gives them: the (last) text encoder's.
    dtype = text_encoders(pipe)[-1][1].dtype
    return Encoded(embeds.to(dtype=dtype, device=device), None if pooled is None else pooled.to(dtype=dtype,
                                                                                                  device=device))


def pad_to(encoded: Encoded, chunks: int, empty) -> Encoded:
    """The embeddings brought to `chunks` chunks (at least theirs). Where `chunks` is a multiple of
    theirs, repeated whole: cross-attention over keys repeated k times is attention over the keys once,
    so the image stays the one A1111 makes by running prompt and negative prompt in separate UNet passes
    when their lengths differ (ComfyUI pads the same way). Otherwise followed by the empty prompt's
    chunk (`empty()`, an Encoded of one chunk) as often as needed: A1111's pad_cond (its "pad prompt/
    negative prompt" option), at the cost of the longer side alone."""
    import torch

    if encoded.chunks == chunks:
        return encoded
    if chunks < encoded.chunks:
        raise ValueError(f"cannot pad {encoded.chunks} chunks to {chunks}")
    if chunks % encoded.chunks == 0:
        return Encoded(encoded.embeds.repeat(1, chunks // encoded.chunks, 1), encoded.pooled)
    fill = empty().embeds.repeat(1, chunks - encoded.chunks, 1)
    return Encoded(torch.cat([encoded.embeds, fill], dim=1), encoded.pooled)


def encode_pair(pipe, spec) -> tuple[Encoded, Encoded | None]:
    """A request's prompt and (under guidance, i.e. above 1, as diffusers) negative prompt, encoded and
    padded to a common chunk count (common_chunks, pad_to). The negative is None without guidance."""
    clip_skip = getattr(spec, "clip_skip", 1)
    positive = encode_text(pipe, spec.prompt, clip_skip)
    if not spec.guided:
        return positive, None
    negative = encode_text(pipe, spec.negative_prompt, clip_skip)
    chunks = common_chunks(positive.chunks, negative.chunks)

    def empty() -> Encoded:  # encoded now, not cached: the request's LoRAs may change the text encoders
        return encode_text(pipe, "", clip_skip)

    return pad_to(positive, chunks, empty), pad_to(negative, chunks, empty)
