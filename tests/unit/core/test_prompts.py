"""Prompts as AUTOMATIC1111 reads them: the syntax, the chunks, and the embeddings both engines use.

The embeddings are checked against diffusers' own `encode_prompt` on the embedded SD 1.x and SDXL
models (their tokenizer has one token per character, spaces aside: "fox " is 3 tokens)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from services.core.errors import InvalidArgument
from services.core.models.loading import load_pipeline
from services.core.prompts import (
    MAX_ATTENTION_WEIGHT,
    check_chunks,
    chunk_count,
    chunk_tokens,
    emphasize,
    encode_pair,
    encode_text,
    max_chunks,
    parse_attention,
    parse_prompt,
    sequence_chunks,
    take_lora_tags,
    text_encoders,
)
from tests.conftest import SERVER_MODES, request_for, service_config

LONG = "fox " * 25  # 75 tokens: one full chunk


# --- syntax


@pytest.mark.parametrize("text, sections", [
    ("a red fox", [[("a red fox", 1.0)]]),
    ("a (fox)", [[("a ", 1.0), ("fox", 1.1)]]),
    ("a ((fox))", [[("a ", 1.0), ("fox", pytest.approx(1.21))]]),
    ("a (fox:1.3) b", [[("a ", 1.0), ("fox", 1.3), (" b", 1.0)]]),
    ("a [fox]", [[("a ", 1.0), ("fox", pytest.approx(1 / 1.1))]]),
    ("a ((fox:0.5) b)", [[("a ", 1.0), ("fox", pytest.approx(0.55)), (" b", 1.1)]]),
    (r"a \(fox\) \[b\]", [[("a (fox) [b]", 1.0)]]),  # escaped brackets are literal text
    ("a (fox:1.0) at dawn", [[("a fox at dawn", 1.0)]]),  # weight 1 merges: the very text of "a fox at dawn"
    ("a BREAK b", [[("a", 1.0)], [("b", 1.0)]]),
    ("(a BREAK b)", [[("a", 1.1)], [("b", 1.1)]]),
    ("BREAKfast", [[("BREAKfast", 1.0)]]),  # BREAK is a word of its own
    ("a (fox", [[("a ", 1.0), ("fox", 1.1)]]),  # never closed: applies to the rest, as in A1111
    ("a fox)", [[("a fox)", 1.0)]]),  # closed but never opened: literal
    ("(fox:x)", [[("fox:x", 1.1)]]),  # not a number: a literal colon
])
def test_attention_syntax_gives_a1111_weights(text, sections):
    assert [list(section) for section in parse_attention(text)] == sections


def test_lora_tags_are_removed_from_the_text_and_returned():
    parsed = parse_prompt("a fox <lora:film grain:0.6>, <lora:pixel>snow")
    assert parsed.loras == (("film grain", 0.6), ("pixel", 1.0))
    assert parsed.sections == ((("a fox , snow", 1.0),),)


@pytest.mark.parametrize("tag, words", [
    ("<lora::0.5>", "names no LoRA"),
    ("<lora:x:abc>", "not a number"),
    ("<lora:x:1:2>", "give one"),
    ("<lora:x:nan>", "finite"),
])
def test_a_malformed_lora_tag_is_an_error(tag, words):
    with pytest.raises(ValueError, match=words):
        take_lora_tags(f"a fox {tag}")


@pytest.mark.parametrize("text", [
    "(x:" + "9" * 50 + ")",  # past float32: the embeddings would be inf and the image black
    "(" * 932 + "x" + ")" * 932,  # 1.1 ** 932: float32's largest finite number, about
    "((x:100))",  # 110: nested weights multiply
    "(x:-101)",
])
def test_an_absurd_effective_weight_is_an_error(text):
    with pytest.raises(ValueError, match="outside -100..100"):
        parse_prompt(f"a {text} fox")


def test_weights_up_to_the_bound_either_sign_are_read():
    assert MAX_ATTENTION_WEIGHT == 100
    assert parse_prompt("(x:100) (y:-100) [[[[[[[[[[[[[[[[[[[[z]]]]]]]]]]]]]]]]]]]]").sections[0][0] == ("x", 100.0)


# --- chunks and embeddings


@pytest.fixture(scope="module")
def pipes():
    loaded = {}

    def get(model):
        if model not in loaded:
            config = service_config("txt2img", "--model", model)
            loaded[model] = load_pipeline(SERVER_MODES["txt2img"], config)[0]
        return loaded[model]

    return get


def diffusers_embeds(pipe, prompt, **kwargs):
    """diffusers' own encoding of one prompt: (embeds, pooled or None)."""
    encoded = pipe.encode_prompt(prompt=prompt, device=pipe._execution_device, num_images_per_prompt=1,
                                 do_classifier_free_guidance=False, **kwargs)
    return encoded[0], (encoded[2] if len(encoded) == 4 else None)


def test_chunks_are_75_tokens_wrapped_in_bos_and_eos(pipes):
    tokenizer = pipes("tiny").tokenizer
    chunks = chunk_tokens(parse_prompt(LONG + "x" * 10 + " BREAK"), tokenizer)
    assert len(chunks) == 2 and all(len(chunk.ids) == 77 for chunk in chunks)
    for chunk in chunks:
        assert chunk.ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in chunk.ids[1:]
    assert chunks[1].length == 2 + 10
    assert chunk_tokens(parse_prompt("a fox"), tokenizer)[0].length == 2 + 4
    # A full chunk ending near a comma: the words after it start the next chunk (the comma is token 64
    # of 76), as A1111 does; without a comma the chunk would end after 75 tokens.
    first, second = chunk_tokens(parse_prompt("abcdefghij " * 6 + "abc, klmnopqrstuv"), tokenizer)
    assert first.length == 2 + 64 and second.length == 2 + 12
    first, second = chunk_tokens(parse_prompt("abcdefghij " * 6 + "abc klmnopqrstuvw"), tokenizer)
    assert first.length == 2 + 75 and second.length == 2 + 1


def test_break_starts_a_new_chunk(pipes):
    tokenizer = pipes("tiny").tokenizer
    assert len(chunk_tokens(parse_prompt("a fox BREAK at dawn"), tokenizer)) == 2
    assert len(chunk_tokens(parse_prompt("a fox at dawn"), tokenizer)) == 1


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_a_plain_prompt_is_diffusers_own_encoding(pipes, model):
    pipe = pipes(model)
    for prompt in ("a red fox at dawn", "", "x" * 75):
        ours = encode_text(pipe, prompt)
        embeds, pooled = diffusers_embeds(pipe, prompt)
        assert torch.equal(ours.embeds, embeds)
        assert (pooled is None and ours.pooled is None) or torch.equal(ours.pooled, pooled)


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_weight_one_is_exactly_the_plain_prompt(pipes, model):
    pipe = pipes(model)
    assert torch.equal(encode_text(pipe, "a (fox:1.0) at dawn").embeds, encode_text(pipe, "a fox at dawn").embeds)
    assert torch.equal(encode_text(pipe, "a fox <lora:film:0.5>").embeds, encode_text(pipe, "a fox ").embeds)


def test_escaped_parentheses_are_encoded_as_literal_text(pipes):
    pipe = pipes("tiny")
    assert torch.equal(encode_text(pipe, r"a \(fox\)").embeds, diffusers_embeds(pipe, "a (fox)")[0])
    assert not torch.equal(encode_text(pipe, "a (fox)").embeds, encode_text(pipe, r"a \(fox\)").embeds)


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_a_weighted_word_scales_its_tokens_against_the_others(pipes, model):
    """A1111's emphasis: the weighted tokens' embeddings are scaled 1.5x relative to the others (all are
    then scaled by one factor so the chunk's mean is the unweighted one), each text encoder's on its own."""
    pipe = pipes(model)
    plain = encode_text(pipe, "a fox at dawn").embeds.double()
    weighted = encode_text(pipe, "a (fox:1.5) at dawn").embeds.double()
    lighter = encode_text(pipe, "a [fox] at dawn").embeds.double()
    fox = slice(2, 5)  # BOS, "a", then "f", "o", "x"
    start = 0
    for _tokenizer, encoder in text_encoders(pipe):  # SDXL: two encoders' features side by side
        features = slice(start, start + encoder.config.hidden_size)
        start = features.stop
        factor = weighted[..., features] / plain[..., features]
        others = torch.cat([factor[:, :fox.start], factor[:, fox.stop:]], dim=1)
        assert torch.allclose(others, others.mean(), rtol=1e-3)
        assert torch.allclose(factor[:, fox], 1.5 * others.mean(), rtol=1e-3)
        if model == "tiny":  # its untrained layer norm averages to zero: no mean to restore
            assert torch.allclose(others, torch.tensor(1.0).double())
        else:
            assert torch.allclose(weighted[..., features].mean(), plain[..., features].mean(), rtol=1e-4)
        down = lighter[..., features] / plain[..., features]
        assert torch.allclose(down[:, fox] / down[:, fox.stop:].mean(), torch.tensor(1 / 1.1).double(), rtol=1e-3)
    assert start == plain.shape[-1]


def test_emphasis_restores_the_mean():
    z = torch.randn(1, 77, 8) + 0.5
    weights = tuple([1.0] * 5 + [1.3] * 3 + [1.0] * 69)
    assert torch.allclose(emphasize(z, weights).mean(), z.mean(), rtol=1e-5)
    assert emphasize(z, (1.0,) * 77) is z
    centred = z - z.mean(dim=-1, keepdim=True)  # a layer norm's output: every token's mean is zero
    assert torch.equal(emphasize(centred, weights), centred * torch.tensor(weights).reshape(1, -1, 1))


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
@pytest.mark.parametrize("clip_skip", [1, 2])
def test_weighted_embeddings_stay_finite(pipes, model, clip_skip):
    for text in ("(ugly:1.2)", "a (red:1.3) fox, [blurry], ((sharp)) " + LONG):
        assert torch.isfinite(encode_text(pipes(model), text, clip_skip).embeds).all()


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_long_prompts_are_not_cut(pipes, model):
    pipe = pipes(model)
    a, b = encode_text(pipe, LONG + "and a red barn"), encode_text(pipe, LONG + "and a grey wolf")
    assert a.embeds.shape[1] == b.embeds.shape[1] == 2 * 77
    assert torch.equal(a.embeds[:, :77], b.embeds[:, :77]) and not torch.equal(a.embeds[:, 77:], b.embeds[:, 77:])
    # diffusers cuts both at 77 tokens: the same embeddings
    assert torch.equal(diffusers_embeds(pipe, LONG + "and a red barn")[0], diffusers_embeds(pipe, LONG + "wolf")[0])
    if model == "tiny-xl":  # the pooled embedding: the second encoder's, on the first chunk
        assert torch.equal(a.pooled, diffusers_embeds(pipe, LONG)[1])


@contextmanager
def diffusers_clip_skip(pipe):
    """diffusers 0.42's clip_skip reads `text_encoder.text_model.final_layer_norm`, which transformers 5
    moved onto the model itself: point that name at the model (outside the module tree) while in use,
    so the reference is diffusers' own code."""
    encoder = pipe.text_encoder
    object.__setattr__(encoder, "text_model", encoder)
    try:
        yield
    finally:
        del encoder.__dict__["text_model"]


def test_clip_skip_2_is_diffusers_clip_skip_1_on_sd1(pipes):
    pipe = pipes("tiny")
    skipped = encode_text(pipe, "a red fox", clip_skip=2).embeds
    with diffusers_clip_skip(pipe):
        assert torch.equal(skipped, diffusers_embeds(pipe, "a red fox", clip_skip=1)[0])
    assert not torch.equal(skipped, encode_text(pipe, "a red fox").embeds)


def test_clip_skip_leaves_sdxl_on_its_penultimate_layer(pipes):
    pipe = pipes("tiny-xl")  # as A1111 (by default) and diffusers' clip_skip=None
    assert torch.equal(encode_text(pipe, "a red fox", clip_skip=2).embeds, diffusers_embeds(pipe, "a red fox")[0])


def test_the_negative_prompt_is_padded_to_the_prompt_s_chunks_by_repeating_it(pipes):
    pipe = pipes("tiny")
    spec = SERVER_MODES["txt2img"].check(request_for("txt2img", prompt=LONG + "and a barn", negative_prompt="blur"),
                                         service_config("txt2img"))
    positive, negative = encode_pair(pipe, spec)
    assert positive.embeds.shape == negative.embeds.shape == (1, 2 * 77, positive.embeds.shape[-1])
    alone = encode_text(pipe, "blur").embeds
    assert torch.equal(negative.embeds, torch.cat([alone, alone], dim=1))
    assert sequence_chunks(pipe, spec) == 2
    # Why repeating: cross-attention over keys repeated is attention over them once, so the UNet's
    # prediction is the one it makes for the negative prompt alone (A1111 runs them apart).
    unet, x, t = pipe.unet, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    with torch.inference_mode():
        once = unet(x, t, encoder_hidden_states=alone).sample
        twice = unet(x, t, encoder_hidden_states=negative.embeds).sample
    assert torch.allclose(once, twice, atol=1e-5)


def guided_spec(prompt: str, negative: str):
    return SERVER_MODES["txt2img"].check(request_for("txt2img", prompt=prompt, negative_prompt=negative),
                                         service_config("txt2img"))


def test_coprime_chunk_counts_cost_the_longer_s_not_their_lcm(pipes):
    """A1111's pad_cond: the shorter side is followed by the empty prompt's chunk up to the longer's
    count. Repeating to the lcm made 60 and 59 chunks (two prompts under 600 characters) 3540 each."""
    pipe = pipes("tiny")
    spec = guided_spec("a fox BREAK " * 59 + "dawn", "blur BREAK " * 58 + "noise")
    assert (chunk_count(pipe, spec.prompt), chunk_count(pipe, spec.negative_prompt)) == (60, 59)
    assert sequence_chunks(pipe, spec) == 60
    positive, negative = encode_pair(pipe, spec)
    assert positive.embeds.shape == negative.embeds.shape == (1, 60 * 77, positive.embeds.shape[-1])
    assert torch.equal(positive.embeds, encode_text(pipe, spec.prompt).embeds)
    assert torch.equal(negative.embeds[:, :59 * 77], encode_text(pipe, spec.negative_prompt).embeds)
    assert torch.equal(negative.embeds[:, 59 * 77:], encode_text(pipe, "").embeds)


@pytest.mark.parametrize("model", ["tiny", "tiny-xl"])
def test_the_shorter_side_is_padded_with_empty_prompt_chunks_where_repeating_cannot_fit(pipes, model):
    pipe = pipes(model)
    spec = guided_spec(LONG + "barn BREAK at dawn", "(blur:1.2), " + LONG)  # 3 chunks and 2
    positive, negative = encode_pair(pipe, spec)
    assert positive.chunks == negative.chunks == sequence_chunks(pipe, spec) == 3
    alone, empty = encode_text(pipe, spec.negative_prompt), encode_text(pipe, "")
    assert torch.equal(negative.embeds, torch.cat([alone.embeds, empty.embeds], dim=1))
    assert (negative.pooled is None and alone.pooled is None) or torch.equal(negative.pooled, alone.pooled)


def test_prompts_past_the_chunk_limit_are_refused_naming_the_field(pipes):
    pipe = pipes("tiny")
    limit = max_chunks(4000)
    assert limit == 73  # 4000 characters / the 55 tokens a chunk holds at least without BREAK
    # Plain text at the character limit stays within it (the tiny tokenizer: one token per character;
    # commas cut chunks short): 54 and 56 chunks, the longer's count.
    assert check_chunks(pipe, guided_spec("x" * 4000, "abcdefghij, " * 333), limit) == 56
    for field, spec in (("params.prompt", guided_spec("BREAK " * 80, "")),
                        ("params.negative_prompt", guided_spec("a fox", "BREAK " * 80))):
        with pytest.raises(InvalidArgument) as error:
            check_chunks(pipe, spec, limit)
        assert error.value.field == field and "80 chunks" in error.value.problem and "limit of 73" in error.value.problem
