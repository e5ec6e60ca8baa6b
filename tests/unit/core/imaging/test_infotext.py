"""Infotext as the services write it, read back by the client's parser (services/client/infotext.py)."""

from services.client.infotext import split_infotext
from services.core.imaging.infotext import format_infotext


def test_round_trip_with_negative_prompt_and_extras():
    text = format_infotext("a red fox", "blurry, dark", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.5,
                                                       "Seed": 7, "Size": "512x512", "Model": "tiny",
                                                       "Denoising strength": 0.6})
    assert text.splitlines() == [
        "a red fox",
        "Negative prompt: blurry, dark",
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x512, Model: tiny, Denoising strength: 0.6",
    ]
    prompt, negative, params = split_infotext(text)
    assert (prompt, negative) == ("a red fox", "blurry, dark")
    assert params["Sampler"] == "Euler a" and params["Denoising strength"] == "0.6"


def test_no_negative_line_when_empty_and_multiline_prompt():
    text = format_infotext("line one\nline two", "", {"Steps": 3, "Seed": 1, "Size": "64x64"})
    assert "Negative prompt" not in text
    assert split_infotext(text) == ("line one\nline two", "", {"Steps": "3", "Seed": "1", "Size": "64x64"})


def test_values_with_commas_or_colons_are_quoted_and_parse_back():
    text = format_infotext("p", "", {"Steps": 3, "Model": "org/model:v1, special", "Seed": 2})
    assert 'Model: "org/model:v1, special"' in text
    assert split_infotext(text)[2]["Model"] == "org/model:v1, special"
