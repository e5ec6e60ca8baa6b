"""Single-file ControlNets: the original-layout writer is the inverse of diffusers' own conversion, and a
file in either layout loads offline into the very ControlNet it was written from; the config derived from
shapes is lllyasviel's and diffusers' for the real sizes; what is no whole ControlNet is refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from services.core.models import controlnet_file, controlnet_writer
from services.core.models.presets import build_tiny_controlnet
from services.core.models.single_file import read_tensors

STRUCTURE = ["in_channels", "conditioning_channels", "conditioning_embedding_out_channels", "block_out_channels",
             "layers_per_block", "down_block_types", "mid_block_type", "cross_attention_dim", "attention_head_dim",
             "use_linear_projection", "norm_num_groups", "addition_embed_type", "addition_time_embed_dim",
             "projection_class_embeddings_input_dim", "global_pool_conditions"]


def structure(config) -> dict:
    return {key: list(v) if isinstance(v := config.get(key), (list, tuple)) else v for key in STRUCTURE}


@pytest.fixture(scope="module", params=["tiny", "tiny-xl"])
def net(request):
    return build_tiny_controlnet(request.param, seed=4, original=True)


@pytest.mark.parametrize("prefix", [True, False])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_diffusers_own_conversion_of_the_written_file_gives_back_the_controlnet(net, tmp_path, prefix, suffix):
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    path = controlnet_writer.write_original(net, tmp_path / f"canny{suffix}", prefix=prefix)
    written = read_tensors(path)
    assert ("control_model.input_hint_block.0.weight" in written) == prefix
    assert any(key.endswith("zero_convs.0.0.weight") for key in written)
    converted = convert_controlnet_checkpoint(written, {"layers_per_block": net.config.layers_per_block})
    expected = net.state_dict()
    # diffusers leaves SDXL's label_emb out (it expects SDXL files in its own layout): controlnet_file maps it.
    left_out = {key for key in expected if key.startswith("add_embedding.")}
    assert bool(left_out) == (net.config.addition_embed_type == "text_time")
    assert set(converted) == set(expected) - left_out
    assert all(torch.equal(converted[key], expected[key]) for key in converted)


@pytest.mark.parametrize("prefix, suffix, layout", [(True, ".safetensors", "original"), (False, ".pth", "original"),
                                                    (False, ".safetensors", "diffusers")])
def test_a_single_file_loads_offline_as_the_controlnet_it_was_written_from(net, tmp_path, prefix, suffix, layout):
    path = tmp_path / f"canny{suffix}"
    if layout == "original":
        controlnet_writer.write_original(net, path, prefix=prefix)
    else:
        save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(path))
    loaded = controlnet_file.load(path, torch.float16)
    assert structure(loaded.config) == structure(net.config)
    state = loaded.state_dict()
    assert all(state[key].dtype == torch.float16 for key in state)
    assert all(torch.equal(state[key], value.half()) for key, value in net.state_dict().items())


def meta_controlnet(**config):
    from diffusers import ControlNetModel

    with torch.device("meta"):
        return ControlNetModel(**config)


# The configs diffusers publishes for lllyasviel's SD 1.5 ControlNets, thibaud's SD 2.1 ones and its own SDXL one.
REAL = {
    "sd15": dict(cross_attention_dim=768, attention_head_dim=8),
    "sd21": dict(cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20], use_linear_projection=True),
    "sdxl": dict(block_out_channels=[320, 640, 1280], cross_attention_dim=2048, attention_head_dim=[5, 10, 20],
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
}


@pytest.mark.parametrize("name", list(REAL))
def test_the_config_derived_from_a_real_sized_file_is_the_published_one(name):
    net = meta_controlnet(**REAL[name])  # no weights: the shapes are all that is read
    state = controlnet_writer.original_state(net)
    derived = controlnet_file.config_of({k: tuple(v.shape) for k, v in controlnet_file.to_diffusers(state).items()})
    assert structure(derived) == structure(net.config)
    if name == "sdxl":
        assert derived["transformer_layers_per_block"] == [1, 2, 10]


def test_what_is_no_whole_controlnet_is_refused_saying_why(net, tmp_path):
    state = controlnet_writer.original_state(net)
    del state["control_model.zero_convs.1.0.weight"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(controlnet_file.ControlNetFileError, match="controlnet_down_blocks.1.weight"):
        controlnet_file.load(tmp_path / "partial.safetensors", torch.float32)
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(4, 4)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(controlnet_file.ControlNetFileError, match="no ControlNet tensors"):
        controlnet_file.load(tmp_path / "lora.safetensors", torch.float32)
    save_file({**state, "difference": torch.zeros(1)}, str(tmp_path / "difference.safetensors"))
    with pytest.raises(controlnet_file.ControlNetFileError, match="difference"):
        controlnet_file.load(tmp_path / "difference.safetensors", torch.float32)


def test_a_pickle_that_runs_code_is_refused_never_run(tmp_path, capsys):
    from services.core.models.single_file import CheckpointError

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"input_hint_block.0.weight": Payload()}, str(tmp_path / "evil.pth"))
    with pytest.raises(CheckpointError, match="refused"):
        controlnet_file.load(tmp_path / "evil.pth", torch.float32)
    assert "ran" not in capsys.readouterr().out


def test_the_sample_single_file_loads_through_the_cache_and_steers(tmp_path):
    from services.core.models.controlnets import ControlNetCache
    from services.core.models.presets import SAMPLE_CONTROLNET_FILES, ensure_sample_controlnets

    folder = ensure_sample_controlnets(tmp_path)
    name = next(iter(SAMPLE_CONTROLNET_FILES))
    net = ControlNetCache(folder).get(name, "cpu", torch.float32, "params.control[0].model")
    assert net.config.norm_num_groups == 32
    assert any(layer.weight.abs().sum() > 0 for layer in net.controlnet_down_blocks)  # not a fresh (zero) one
