from services.core.imaging.infotext import format_infotext, parse_infotext


def test_round_trip_with_negative_prompt_and_extras():
    text = format_infotext("a red fox", "blurry, dark", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.5,
                                                       "Seed": 7, "Size": "512x512", "Model": "tiny",
                                                       "Denoising strength": 0.6})
    assert text.splitlines() == [
        "a red fox",
        "Negative prompt: blurry, dark",
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x512, Model: tiny, Denoising strength: 0.6",
    ]
    parsed = parse_infotext(text)
    assert parsed["prompt"] == "a red fox"
    assert parsed["negative_prompt"] == "blurry, dark"
    assert parsed["params"]["Sampler"] == "Euler a"
    assert parsed["params"]["Denoising strength"] == "0.6"


def test_no_negative_line_when_empty_and_multiline_prompt():
    text = format_infotext("line one\nline two", "", {"Steps": 3, "Seed": 1, "Size": "64x64"})
    assert "Negative prompt" not in text
    parsed = parse_infotext(text)
    assert parsed["prompt"] == "line one\nline two"
    assert parsed["negative_prompt"] == ""
    assert parsed["params"] == {"Steps": "3", "Seed": "1", "Size": "64x64"}


def test_values_with_commas_or_colons_are_quoted_and_parse_back():
    text = format_infotext("p", "", {"Steps": 3, "Model": "org/model:v1, special", "Seed": 2})
    assert 'Model: "org/model:v1, special"' in text
    assert parse_infotext(text)["params"]["Model"] == "org/model:v1, special"


def test_reads_automatic1111_output():
    text = ("masterpiece, a castle\nNegative prompt: lowres\n"
            "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: abc, Model: v15")
    parsed = parse_infotext(text)
    assert parsed["prompt"] == "masterpiece, a castle"
    assert parsed["params"]["Seed"] == "1234" and parsed["params"]["Model hash"] == "abc"
