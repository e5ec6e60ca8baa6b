"""Conditioners: what a row adds to the UNet call it rides in, the one mechanism for conditioning.

A conditioner may add any of three things (the base class adds none), and do work batched over the rows
of a call first (`before_call`: ControlNets run once over the rows that use each):
- `channels`: extra UNet input channels, batched like the row's UNet input (9-channel inpainting);
- `unet_kwargs`: keyword arguments of the UNet call, by path (("added_cond_kwargs", "time_ids"); an int
  in a path is a tuple's position), batched like the row's UNet input. Rows of a call that lack an
  argument another row has get its neutral value, zeros, in their place (ControlNet residuals);
- `after_step`: a change to the row's latents after its scheduler's step (4-channel inpainting);
- `resized`: the row has just changed size (a hires fix's resize): what was made for the old size is
  made again for the new (ControlNet maps).
`denoise.unet_step` applies them without knowing any of them; new conditioning is a new class here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch


class Conditioner:
    @classmethod
    def before_call(cls, members: list[tuple]) -> None:
        """Once per UNet call, before its arguments are gathered: (row, conditioner, x) for every row of
        the call with a conditioner of this class, x the row's UNet input before any extra channels."""

    def channels(self, row) -> torch.Tensor | None:
        return None

    def unet_kwargs(self, row) -> dict[tuple, torch.Tensor]:
        return {}

    def after_step(self, row) -> None:
        pass

    def resized(self, row) -> None:
        """Called once the row's latents are at the size of its new phase (row.phase.size)."""


class TextTime(Conditioner):
    """SDXL's added conditioning: the pooled text embedding, and the size numbers of the size the row
    denoises at now (made per size on first use: a row that changes size gets its new size's ids)."""

    def __init__(self, pooled: torch.Tensor, time_ids: Callable[[tuple[int, int]], torch.Tensor]):
        self.pooled, self._time_ids, self._by_size = pooled, time_ids, {}

    def unet_kwargs(self, row) -> dict[tuple, torch.Tensor]:
        size = row.phase.size
        if size not in self._by_size:
            self._by_size[size] = self._time_ids(size)
        return {("added_cond_kwargs", "text_embeds"): self.pooled, ("added_cond_kwargs", "time_ids"): self._by_size[size]}


class InpaintChannels(Conditioner):
    """A 9-channel inpainting UNet's extra input: the mask and the masked image's latents."""

    def __init__(self, mask: torch.Tensor, masked_latents: torch.Tensor):
        import torch

        self.extra = torch.cat([mask, masked_latents], dim=1)  # batched like the UNet input already

    def channels(self, row) -> torch.Tensor:
        return self.extra


class KeepUnmasked(Conditioner):
    """A 4-channel model used for inpainting: after each step the unmasked part is put back, as the input
    image's latents noised to the next timestep (as diffusers' inpainting pipeline does)."""

    def __init__(self, image_latents: torch.Tensor, noise: torch.Tensor, keep: torch.Tensor):
        self.image_latents, self.noise, self.keep = image_latents, noise, keep

    def after_step(self, row) -> None:
        import torch

        known = self.image_latents
        if row.index < len(row.timesteps) - 1:
            known = row.scheduler.add_noise(known, self.noise, torch.tensor([row.timesteps[row.index + 1]]))
        row.latents = (1 - self.keep) * known + self.keep * row.latents


def before_call(rows: list, inputs: list) -> None:
    """Each conditioner class's `before_call` over the rows of one call that carry it (`inputs`: their UNet
    inputs before extra channels, in row order)."""
    members: dict[type, list[tuple]] = {}
    for row, x in zip(rows, inputs):
        for cond in row.conditioners:
            members.setdefault(type(cond), []).append((row, cond, x))
    for kind, found in members.items():
        kind.before_call(found)


def batched_kwargs(rows: list, per_row: list[dict[tuple, torch.Tensor]]) -> dict:
    """The UNet call's keyword arguments from each row's (by path), in row order; a row without an
    argument gets zeros for its rows of the batch. Paths become nested dicts (str) and tuples (int)."""
    import torch

    paths = list(dict.fromkeys(path for kwargs in per_row for path in kwargs))
    flat = {}
    for path in paths:
        example = next(kwargs[path] for kwargs in per_row if path in kwargs)
        flat[path] = torch.cat([
            kwargs[path] if path in kwargs else example.new_zeros((row.unet_rows, *example.shape[1:]))
            for row, kwargs in zip(rows, per_row)
        ])
    return _nest(flat)


def _nest(flat: dict[tuple, object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    def build(node):
        if not isinstance(node, dict):
            return node
        if node and all(isinstance(key, int) for key in node):
            return tuple(build(node[i]) for i in range(len(node)))
        return {key: build(value) for key, value in node.items()}

    return build(tree)
