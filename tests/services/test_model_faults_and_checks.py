"""Several checkpoints per service: out of memory while bringing one to the device fails only its
requests, and each request is checked by its own model's facts (text encoder layers, tokenizer)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import torch

from services.client import OutOfMemory
from services.client.errors import InvalidInput
from services.core.models import presets
from tests.conftest import CACHE_DIR, RunningService, request_for
from tests.ldm_layout import write_single_file
from tests.services.test_model_pool import models, start  # noqa: F401 - models is a fixture

INJECTED = "CUDA out of memory. Tried to allocate 2.00 GiB (injected)"


def outcome(client, name: str):
    try:
        return client.generate(request_for("txt2img", steps=3, model=name))
    except OutOfMemory as err:
        return err


@pytest.mark.parametrize("engine", ["pipeline", "step"])
def test_out_of_memory_loading_a_model_is_resource_exhausted_for_its_requests_only(
        models, engine):  # noqa: F811 - the fixture
    service = start(models, "--max-loaded", "1", engine=engine)
    try:
        client, pool = service.client, service.runtime.pool
        load = pool._load

        def out_of_memory_for_beta(source: str):  # the fault: loading beta exhausts the device
            if source.endswith("beta"):
                raise torch.OutOfMemoryError(INJECTED)
            return load(source)

        pool._load = out_of_memory_for_beta
        names = ["alpha", "beta"] * 4
        with ThreadPoolExecutor(8) as crowd:
            results = list(crowd.map(lambda name: outcome(client, name), names))
        for name, result in zip(names, results):
            if name == "beta":
                assert isinstance(result, OutOfMemory), result
                assert result.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "out of memory loading the model beta" in result.details()
            else:
                assert "Model: alpha," in result.images[0].infotext
        assert client.health() == "SERVING" and pool.held("beta") is None
        pool._load = load  # the fault gone, beta loads
        beta = client.generate(request_for("txt2img", steps=2, model="beta")).images[0]
        assert "Model: beta," in beta.infotext
        # A switch back from host memory that runs out of memory midway leaves the model in host memory.
        alpha = pool.held("alpha")
        assert pool.in_host("alpha")
        move, moves = alpha.pipe.to, []

        def out_of_memory_to(*args, **kwargs):  # the fault: its first move (onto the device) runs out
            moves.append(args)
            if len(moves) == 1:
                raise torch.OutOfMemoryError(INJECTED)
            return move(*args, **kwargs)

        alpha.pipe.to = out_of_memory_to
        assert isinstance(outcome(client, "alpha"), OutOfMemory)
        assert len(moves) == 2 and pool.in_host("alpha")  # moved back whole, and kept
        assert client.generate(request_for("txt2img", steps=2, model="beta")).images
        del alpha.pipe.to
        assert "Model: alpha," in client.generate(request_for("txt2img", steps=2)).images[0].infotext
        assert service.metric("imagegen_model_loads_total") == 1  # beta; alpha came back from host memory
    finally:
        service.stop()


def merging_tokenizer():
    """The tiny tokenizer with one merge: "ab" is one token (in place of a symbol's, so the text encoder's
    vocabulary keeps its size), where the tiny model's tokenizer makes it two."""
    from transformers import CLIPTokenizer

    vocab = presets.build_tiny_tokenizer().get_vocab()
    spare = next(token for token in vocab if token.endswith("</w>") and not token[0].isascii())
    vocab["ab</w>"] = vocab.pop(spare)
    return CLIPTokenizer(vocab=vocab, merges=[("a", "b</w>")], model_max_length=77)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """base (the tiny model), deep (4 text encoder layers, a merging tokenizer) and single (a single-file
    checkpoint of the tiny model, whose layers are known only once it loads)."""
    root, spare = tmp_path_factory.mktemp("varied"), tmp_path_factory.mktemp("varied-spare")
    tiny = presets.ensure_tiny(CACHE_DIR, False)
    shutil.copytree(tiny, root / "base")
    deeper = {**presets.TINY, "text": {**presets.TINY["text"], "num_hidden_layers": 4}}
    pipe = presets.build_pipeline(deeper, False)
    pipe.tokenizer = merging_tokenizer()
    pipe.save_pretrained(root / "deep")
    write_single_file(shutil.copytree(tiny, spare / "single"), root / "single.safetensors")
    return root


@pytest.mark.parametrize("engine", ["pipeline", "step"])
def test_each_request_is_checked_by_its_own_models_text_encoder_and_tokenizer(varied, engine):
    service = RunningService("txt2img", "--warmup", "false", "--models-dir", str(varied), "--model", "base",
                             "--model-config", str(presets.ensure_tiny(CACHE_DIR, False)), "--engine", engine)

    def refusal(**fields) -> str:
        with pytest.raises(InvalidInput) as refused:
            client.generate(request_for("txt2img", steps=2, **fields))
        assert [v.field for v in refused.value.violations] == ["params.clip_skip"]
        return refused.value.violations[0].description

    try:
        client, runtime = service.client, service.runtime
        assert "outside 1..2" in refusal(clip_skip=3)  # the default's 2 layers
        # deep, never loaded: its 4 layers (from its configs), refused before any load.
        assert "outside 1..4" in refusal(clip_skip=5, model="deep")
        assert service.metric("imagegen_model_loads_total") == 0
        # Its own tokenizer counts the chunks (read from its folder, then from the loaded model).
        prompt = "ab " * 60  # 60 tokens for deep's tokenizer, 120 for base's

        def chunks(name: str) -> int:
            return runtime.check(request_for("txt2img", prompt=prompt, model=name)).prompt_chunks

        assert (chunks("base"), chunks("deep")) == (2, 1)
        assert "Clip skip: 3" in client.generate(request_for("txt2img", steps=2, clip_skip=3, model="deep",
                                                             prompt=prompt)).images[0].infotext
        assert service.metric("imagegen_model_loads_total") == 1 and chunks("deep") == 1
        # single's layers are known once it loads: a clip skip it lacks is refused then, naming the field,
        # and before any load afterwards.
        assert "outside 1..2" in refusal(clip_skip=3, model="single")
        assert service.metric("imagegen_model_loads_total") == 2
        assert "outside 1..2" in refusal(clip_skip=3, model="single")
        assert service.metric("imagegen_model_loads_total") == 2
        assert client.generate(request_for("txt2img", steps=2, clip_skip=2, model="single")).images
    finally:
        service.stop()
