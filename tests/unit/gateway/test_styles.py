"""Prompt styles as AUTOMATIC1111 applies them (its merge_prompts), from a styles.csv reread on change."""

from __future__ import annotations

import os

import pytest

from gateway_ui.styles import MAX_STYLES_PER_REQUEST, Style, StyleBook, UnknownStyle, merge, parse

CSV = 'name,prompt,negative_prompt\nPhoto,"{prompt}, photo","drawing"\nTail,"4k, detailed",\n'


@pytest.mark.parametrize("style, prompt, merged", [
    ("{prompt}, photo", "a fox", "a fox, photo"),                    # the placeholder wraps the prompt
    ("art of {prompt} and {prompt}", "x", "art of x and x"),          # every placeholder
    ("4k, detailed", "  a fox ", "a fox, 4k, detailed"),              # appended after ", ", both stripped
    ("4k", "a fox,", "a fox, 4k"),                                    # a prompt ending in a comma: " "
    ("", "a fox", "a fox"),                                           # an empty style leaves the prompt
    ("4k", "", "4k"),                                                 # an empty prompt takes the style
])
def test_merge_is_a1111s(style, prompt, merged):
    assert merge(style, prompt) == merged


def test_the_file_gives_styles_in_order_and_a1111s_old_text_column():
    assert parse(CSV) == [Style("Photo", "{prompt}, photo", "drawing"), Style("Tail", "4k, detailed", "")]
    assert parse("name,text\nOld,old prompt\n,skipped\n") == [Style("Old", "old prompt", "")]


def test_styles_apply_in_order_to_both_prompts_and_unknown_ones_are_named(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(CSV, encoding="utf-8")
    book = StyleBook(path)
    assert book.apply(["Photo", "Tail"], "a fox", "blurry") == ("a fox, photo, 4k, detailed", "blurry, drawing")
    assert book.apply(["Tail", "Photo"], "a fox", "") == ("a fox, 4k, detailed, photo", "drawing")
    with pytest.raises(UnknownStyle, match=r"'Nope'.*Photo, Tail"):
        book.apply(["Photo", "Nope"], "a fox", "")
    with pytest.raises(UnknownStyle, match="at most"):
        book.apply(["Photo"] * (MAX_STYLES_PER_REQUEST + 1), "a fox", "")


def test_the_file_is_reread_when_it_changes_and_a_bad_one_leaves_none(tmp_path, caplog):
    path = tmp_path / "styles.csv"
    path.write_text(CSV, encoding="utf-8")
    book = StyleBook(path)
    assert book.names() == ["Photo", "Tail"]
    path.write_text("name,prompt\nNew,{prompt} anew\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a changed stamp even within the clock's resolution
    assert book.names() == ["New"]
    path.write_bytes(b"name,prompt\n\xff\xfe bad,\x00\n")
    os.utime(path, ns=(2, 2))
    assert book.names() == [] and "not a readable styles.csv" in caplog.text
    path.unlink()
    assert book.names() == [] and "cannot be read" in caplog.text
    assert StyleBook(None).names() == []


def test_the_hires_fix_s_own_prompts_are_styled_and_empty_ones_stay_the_first_pass_s(tmp_path):
    from gateway_ui.styles import apply_styles
    from services.client import make_request

    path = tmp_path / "styles.csv"
    path.write_text(CSV, encoding="utf-8")
    book = StyleBook(path)
    request = make_request("txt2img", "a fox", negative_prompt="blurry", hires={"prompt": "a sharp fox"})
    apply_styles(book, request, ["Photo"])
    assert (request.params.prompt, request.params.negative_prompt) == ("a fox, photo", "blurry, drawing")
    assert (request.hires.prompt, request.hires.negative_prompt) == ("a sharp fox, photo", "")
    plain = make_request("txt2img", "a fox", hires={})
    apply_styles(book, plain, ["Photo"])
    assert (plain.hires.prompt, plain.hires.negative_prompt) == ("", "")  # the first pass's, styled
