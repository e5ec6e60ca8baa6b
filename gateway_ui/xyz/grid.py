"""The plot's grid images, drawn as AUTOMATIC1111's modules/images.py does (image_grid and
draw_grid_annotations): cells side by side, x values as column titles above, y values as row titles
in a left margin three quarters of a cell wide, text (width + height) / 25 px high, black on white,
shrunk to fit; with a z axis, one such grid per z value, side by side under the z values' titles.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

BACKGROUND, TEXT = (255, 255, 255), (0, 0, 0)  # A1111's grid_background_color, grid_text_active_color


def image_grid(images: list[Image.Image], rows: int) -> Image.Image:
    """The images in `rows` rows, left to right then top to bottom, each in a cell of the first's size."""
    cols = -(-len(images) // rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), color="black")
    for i, image in enumerate(images):
        grid.paste(image, box=(i % cols * w, i // cols * h))
    return grid


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(1, size))  # Pillow's own scalable font: nothing to install


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    lines = [""]
    for word in text.split():
        line = f"{lines[-1]} {word}".strip()
        if draw.textlength(line, font=font) <= width:
            lines[-1] = line
        else:
            lines.append(word)
    return lines


def annotate(im: Image.Image, width: int, height: int, hor_texts: list[str], ver_texts: list[str],
             margin: int = 0) -> Image.Image:
    """A grid of width x height cells with its column titles above and row titles to the left, and
    `margin` pixels between cells; no text, no margin band."""
    fontsize = (width + height) // 25
    spacing = fontsize // 2
    font = _font(fontsize)
    pad_left = 0 if not any(ver_texts) else width * 3 // 4
    cols, rows = im.width // width, im.height // height
    assert cols == len(hor_texts) and rows == len(ver_texts), "a title per column and per row"

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1), BACKGROUND))

    def lines_of(text: str, allowed: float) -> list[tuple[str, tuple[int, int], float]]:
        out = []
        for line in _wrap(measure, text, font, allowed):
            box = measure.multiline_textbbox((0, 0), line, font=font)
            out.append((line, (box[2] - box[0], box[3] - box[1]), allowed))
        return out

    hor = [lines_of(text, width) for text in hor_texts]
    ver = [lines_of(text, pad_left) for text in ver_texts]
    hor_heights = [sum(size[1] + spacing for _, size, _ in lines) - spacing for lines in hor]
    ver_heights = [sum(size[1] + spacing for _, size, _ in lines) - spacing * len(lines) for lines in ver]
    pad_top = 0 if sum(hor_heights) == 0 else max(hor_heights) + spacing * 2

    size = (im.width + pad_left + margin * (cols - 1), im.height + pad_top + margin * (rows - 1))
    result = Image.new("RGB", size, BACKGROUND)
    for row in range(rows):
        for col in range(cols):
            cell = im.crop((width * col, height * row, width * (col + 1), height * (row + 1)))
            result.paste(cell, (pad_left + (width + margin) * col, pad_top + (height + margin) * row))

    draw = ImageDraw.Draw(result)

    def texts(x: float, y: float, lines) -> None:
        for line, size, allowed in lines:
            fitted, points = font, fontsize
            while points > 1 and draw.multiline_textbbox((0, 0), line, font=fitted)[2] > allowed:
                points -= 1  # A1111 shrinks a line that is still too wide (one long word)
                fitted = _font(points)
            draw.multiline_text((x, y + size[1] / 2), line, font=fitted, fill=TEXT, anchor="mm", align="center")
            y += size[1] + spacing

    for col in range(cols):
        texts(pad_left + (width + margin) * col + width / 2, pad_top / 2 - hor_heights[col] / 2, hor[col])
    for row in range(rows):
        texts(pad_left / 2, pad_top + (height + margin) * row + height / 2 - ver_heights[row] / 2, ver[row])
    return result


def blank(like: Image.Image | None, size: tuple[int, int]) -> Image.Image:
    """A cell that made no image (stopped): black, as A1111 leaves it."""
    return Image.new("RGB", like.size if like is not None else size)


def xyz_grids(cells: list[Image.Image], shape: tuple[int, int, int], captions: tuple[list, list, list],
              draw_legend: bool = True, margin: int = 0) -> tuple[Image.Image, list[Image.Image]]:
    """(the whole grid, one sub-grid per z value) from the cells in A1111's order (x fastest)."""
    nx, ny, nz = shape
    x_captions, y_captions, z_captions = captions
    width, height = cells[0].size
    subs = []
    for iz in range(nz):
        sub = image_grid(cells[iz * nx * ny:(iz + 1) * nx * ny], rows=ny)
        if draw_legend:
            sub = annotate(sub, width, height, x_captions, y_captions, margin)
        subs.append(sub)
    whole = image_grid(subs, rows=1)
    if draw_legend:
        whole = annotate(whole, subs[0].width, subs[0].height, z_captions, [""])
    return whole, subs


def png_with_infotext(image: Image.Image, infotext: str) -> bytes:
    """PNG bytes carrying the infotext in the `parameters` chunk, where A1111's tools read it."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=4)
    return buf.getvalue()
