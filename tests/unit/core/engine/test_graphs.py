"""--compile's arithmetic (engine/graphs.py): which bucket a call takes, padding its arguments (nested
ones too) with row 0 and slicing back, what a graph is specialised on, why a call runs uncompiled; and
the UNet's preparation (channels_last, fused QKV) keeping its output."""

from __future__ import annotations

import pytest
import torch

from services.core.engine.graphs import (CompiledUNet, argument_names, bucket_for, pad_rows, prepare, signature,
                                         text_time_kwargs)
from services.core.models.presets import build_tiny_pipeline, build_tiny_xl_pipeline


@pytest.mark.parametrize("rows,bucket", [(1, 2), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8), (9, None)])
def test_a_call_takes_the_smallest_bucket_that_holds_its_rows(rows, bucket):
    assert bucket_for(rows, (2, 4, 8)) == bucket


def test_padding_repeats_row_zero_in_every_batched_argument_and_keeps_the_rest():
    sample = torch.arange(3 * 2, dtype=torch.float32).reshape(3, 2)
    residuals = (torch.ones(3, 4), torch.zeros(3, 1, 2))
    padded = pad_rows((sample, {"added_cond_kwargs": {"time_ids": sample + 1}, "down": residuals, "scale": 0.5}), 4)
    out, kwargs = padded
    assert out.shape == (4, 2) and torch.equal(out[:3], sample) and torch.equal(out[3], sample[0])
    assert torch.equal(kwargs["added_cond_kwargs"]["time_ids"][3], sample[0] + 1)
    assert isinstance(kwargs["down"], tuple) and [t.shape[0] for t in kwargs["down"]] == [4, 4]
    assert kwargs["scale"] == 0.5
    assert pad_rows(sample, 3) is sample  # already a bucket's rows


def test_a_signature_leaves_the_rows_out_and_sees_shapes_dtypes_and_names():
    a = {"x": torch.zeros(2, 4, 8, 8), "k": {"t": torch.zeros(2, 6)}}
    assert signature(a) == signature({"x": torch.ones(5, 4, 8, 8), "k": {"t": torch.ones(5, 6)}})
    assert signature(a) != signature({"x": torch.zeros(2, 4, 16, 16), "k": {"t": torch.zeros(2, 6)}})
    assert signature(a) != signature({"x": torch.zeros(2, 4, 8, 8, dtype=torch.float16), "k": {"t": torch.zeros(2, 6)}})
    assert argument_names(a) == ["x", "k.t"]


def tiny_unet():
    return build_tiny_pipeline(False).unet.eval()


def call_args(unet, rows, side=8):
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(rows, unet.config.in_channels, side, side, generator=generator)
    embeds = torch.randn(rows, 77, unet.config.cross_attention_dim, generator=generator)
    return sample, embeds


def test_why_a_call_runs_uncompiled():
    unet = tiny_unet()
    compiled = CompiledUNet(unet, (4, 2))  # torch.compile is lazy: nothing compiles here
    assert compiled.buckets == (2, 4) and compiled.largest == 4
    sample, embeds = call_args(unet, 2)
    # What warm-up would record, by hand.
    compiled.warmed.add((2, signature((sample, embeds, {}))))
    assert compiled.eager_reason(sample, embeds, {}) is None
    assert compiled.eager_reason(*call_args(unet, 1), {}) is None  # padded to the bucket of 2
    assert compiled.eager_reason(*call_args(unet, 5), {}).startswith("more UNet rows than the largest")
    assert compiled.eager_reason(*call_args(unet, 3), {}).startswith("an input shape")  # bucket 4 not warmed
    assert compiled.eager_reason(*call_args(unet, 2, side=16), {}).startswith("an input shape")
    residual = {"mid_block_additional_residual": torch.zeros(2, 64, 1, 1)}
    assert compiled.eager_reason(sample, embeds, residual) == \
        "UNet arguments no graph was warmed with (mid_block_additional_residual)"
    unet.peft_config = {"a0": object()}  # what diffusers sets once a LoRA is loaded
    assert compiled.eager_reason(sample, embeds, {}) == "LoRA adapters are loaded on the UNet"


def test_an_uncompiled_call_is_the_module_s_own_and_counted_once_logged(caplog):
    unet = tiny_unet()
    compiled = CompiledUNet(unet, (2,))
    sample, embeds = call_args(unet, 3)
    timesteps = torch.tensor([10, 500, 900])
    with torch.inference_mode(), caplog.at_level("INFO"):
        got = compiled(sample, timesteps, encoder_hidden_states=embeds, return_dict=False)[0]
        compiled(sample, timesteps, encoder_hidden_states=embeds, return_dict=False)
        expected = unet(sample, timesteps, encoder_hidden_states=embeds, return_dict=False)[0]
    assert torch.equal(got, expected)  # float32 timesteps give the same embedding as int64 ones
    assert sum("run uncompiled" in record.message for record in caplog.records) == 1


def test_channels_last_and_fused_qkv_keep_the_unet_s_output():
    unet = tiny_unet()
    sample, embeds = call_args(unet, 2)
    timesteps = torch.tensor([100, 700])
    with torch.inference_mode():
        before = unet(sample, timesteps, encoder_hidden_states=embeds).sample
        done = prepare(unet, fuse_qkv=True)
        after = unet(sample, timesteps, encoder_hidden_states=embeds).sample
    assert "fused QKV projections" in done and "channels_last" in done
    assert (before - after).abs().max() <= 1e-5
    assert "QKV unfused" in prepare(tiny_unet(), fuse_qkv=False)


def test_sdxl_warm_up_arguments_are_shaped_as_the_engine_sends_them():
    pipe = build_tiny_xl_pipeline(False)
    kwargs = text_time_kwargs(pipe.unet.config, pipe.text_encoder_2.config.projection_dim, 2, torch.float32, "cpu")
    sample, _ = call_args(pipe.unet, 2)
    embeds = torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    with torch.inference_mode():  # the UNet takes them: the widths add up to its projection's input
        assert pipe.unet(sample, torch.tensor([1, 2]), encoder_hidden_states=embeds, added_cond_kwargs=kwargs["added_cond_kwargs"]).sample.shape == sample.shape
    assert text_time_kwargs(tiny_unet().config, None, 2, torch.float32, "cpu") == {}
