"""models/embeddings.py: files read as A1111 reads them, loaded by diffusers' load_textual_inversion into the
models they fit (the prompt's vectors equal diffusers' own, SD and SDXL), skipped with a log line otherwise;
a multi-vector embedding is expanded in any case and never split between chunks."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from services.core.models import embeddings
from services.core.models.presets import SAMPLE_EMBEDDINGS, ensure_sample_embeddings, ensure_tiny
from services.core.prompts import chunk_tokens, encode_text, parse_prompt
from tests.conftest import CACHE_DIR
from tests.embedding_files import write_pt, write_safetensors, write_sdxl


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("embeddings")
    write_pt(root, "foxemb", count=3, seed=1)
    write_safetensors(root, "Glow", count=1, seed=2)
    write_sdxl(root, "xlemb", count=2, seed=3)
    return root


def tiny(name: str = "tiny"):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(ensure_tiny(CACHE_DIR, False, name))


def test_files_are_read_as_a1111_reports_them(folder):
    found = embeddings.read_folder(folder)
    assert sorted(found) == ["Glow", "foxemb", "xlemb"]
    fox, glow, xl = found["foxemb"], found["Glow"], found["xlemb"]
    assert (fox.vectors, fox.shape, fox.step) == (3, 32, 1500)
    assert (fox.sd_checkpoint, fox.sd_checkpoint_name) == ("0123456789", "tiny")
    assert (glow.vectors, glow.shape, glow.step) == (1, 32, None)
    assert (xl.vectors, xl.shape, xl.family) == (2, 80, "sdxl")
    assert fox.hash == hashlib.sha256((folder / "foxemb.pt").read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("content, words", [
    (b"junk", "OSError"),  # neither safetensors nor a torch pickle
    ({"a": torch.ones(2, 32), "b": torch.ones(2, 32)}, "not an embedding"),
    ({"clip_l": torch.ones(2, 32), "clip_g": torch.ones(3, 48)}, "different numbers of vectors"),
    ({"emb_params": torch.ones(2, 3, 32)}, "not a (vectors, width) tensor"),
])
def test_a_file_that_is_no_embedding_is_skipped_with_a_log_line(tmp_path, caplog, content, words):
    path = tmp_path / "bad.safetensors"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save_file(content, str(path))
    write_safetensors(tmp_path, "good")
    caplog.set_level("WARNING", logger="services.core.models.embeddings")
    assert list(embeddings.read_folder(tmp_path)) == ["good"]
    assert "bad.safetensors is skipped" in caplog.text and words in caplog.text


def test_an_embedding_s_prompt_vectors_are_diffusers_own(folder):
    pipe, reference = tiny(), tiny()
    loaded = embeddings.load_into(pipe, embeddings.read_folder(folder), "tiny")
    assert sorted(loaded) == ["Glow", "foxemb"]  # xlemb does not fit
    reference.load_textual_inversion(str(folder / "foxemb.pt"), token="foxemb")
    reference.load_textual_inversion(str(folder / "Glow.safetensors"), token="Glow")
    for prompt in ("a foxemb fox", "a fox, Glow", "a fox"):
        theirs = reference.encode_prompt(prompt, "cpu", 1, False)[0]
        assert torch.equal(encode_text(pipe, prompt).embeds, theirs), prompt
    # Any case: every vector (diffusers' own expansion finds only the lower-cased name)
    assert torch.equal(encode_text(pipe, "a FOXEMB fox").embeds, encode_text(pipe, "a foxemb fox").embeds)
    assert embeddings.used(pipe, loaded, ["a FoxEmb fox", "glow"]) == (("Glow", loaded["Glow"].hash),
                                                                        ("foxemb", loaded["foxemb"].hash))
    assert embeddings.used(pipe, loaded, ["a fox", ""]) == ()


def test_an_sdxl_embedding_s_vectors_are_diffusers_own_for_both_encoders(folder, caplog):
    caplog.set_level("WARNING", logger="services.core.models.embeddings")
    pipe, reference = tiny("tiny-xl"), tiny("tiny-xl")
    assert list(embeddings.load_into(pipe, embeddings.read_folder(folder), "xl")) == ["xlemb"]
    assert "foxemb is skipped for model xl: it is a one-encoder embedding" in caplog.text
    parts = load_file(folder / "xlemb.safetensors")
    reference.load_textual_inversion(parts["clip_l"], token="xlemb", text_encoder=reference.text_encoder,
                                     tokenizer=reference.tokenizer)
    reference.load_textual_inversion(parts["clip_g"], token="xlemb", text_encoder=reference.text_encoder_2,
                                     tokenizer=reference.tokenizer_2)
    ours = encode_text(pipe, "a xlemb fox")
    embeds, _negative, pooled, _ = reference.encode_prompt("a xlemb fox", device="cpu",
                                                           do_classifier_free_guidance=False)
    assert torch.equal(ours.embeds, embeds) and torch.equal(ours.pooled, pooled)


def test_another_width_or_a_name_the_tokenizer_has_is_skipped(tmp_path, caplog):
    caplog.set_level("WARNING", logger="services.core.models.embeddings")
    write_safetensors(tmp_path, "wide", width=768)  # an SD 1.x embedding: the tiny model is 32 wide
    write_safetensors(tmp_path, "a")  # "a" is in the tiny tokenizer's vocabulary
    found = embeddings.read_folder(tmp_path)
    assert found["wide"].family == "sd1"
    assert embeddings.load_into(tiny(), found, "tiny") == {}
    assert "wide is skipped for model tiny: its vectors are 768 wide, the model's text encoder(s) take 32" \
        in caplog.text
    assert "'a' already" in caplog.text


def test_a_multi_vector_embedding_is_never_split_between_chunks(folder):
    pipe = tiny()
    embeddings.load_into(pipe, embeddings.read_folder(folder), "tiny")
    first, second = chunk_tokens(parse_prompt("a " * 74 + "foxemb"), pipe.tokenizer)
    assert first.length == 2 + 74 and second.length == 2 + 3  # the 3 vectors start the next chunk
    weighted = chunk_tokens(parse_prompt("a (foxemb:1.2) fox"), pipe.tokenizer)[0]
    assert weighted.weights[2:5] == (1.2, 1.2, 1.2) and weighted.weights[5] == 1.0


def test_the_sample_embeddings_fit_the_tiny_models(tmp_path):
    folder = ensure_sample_embeddings(tmp_path)
    found = embeddings.read_folder(folder)
    assert sorted(found) == sorted(SAMPLE_EMBEDDINGS)
    assert list(embeddings.load_into(tiny(), found, "tiny")) == ["tiny-embedding"]
    assert list(embeddings.load_into(tiny("tiny-xl"), found, "tiny-xl")) == ["tiny-xl-embedding"]
    assert ensure_sample_embeddings(tmp_path) == folder  # once: the files are kept
