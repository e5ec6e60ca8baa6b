"""ControlNet as a conditioner: a row's units, run once per UNet call over the rows that use each
ControlNet, their residuals scaled per row and summed over the row's units into the UNet call.

The arithmetic is diffusers' ControlNet pipelines' loop body, row by row:
- the control image is prepared as their `prepare_image` does (control_image_processor: RGB, 0..1, at
  the row's size); a row that changes size (a hires fix's resize) gets its units' maps fitted again at
  the new size, as sd-webui-controlnet prepares a hint of its own for the hires pass (hr_control);
- a unit steers at step i of n while i/n >= start and (i+1)/n <= end (their `controlnet_keep`);
- its residuals are scaled by its weight, and for soft injection (both control modes but balanced)
  residual j of m by SOFT_INJECTION_BASE^(m-1-j) as sd-webui-controlnet does (the deepest, the mid
  block's, at the full weight);
- "ControlNet is more important" under guidance: the ControlNet runs on the conditional half only, the
  unconditional half gets zeros (their guess mode's arrangement);
- a ControlNet sees the 4-channel scaled latents, whatever the UNet's extra channels (9-channel
  inpainting), and SDXL's text-time conditioning of the row.
Rows without a unit, or whose units are outside their guidance range this step, pay nothing: the call's
other rows' residuals get zeros in their place (conditioners.batched_kwargs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagegen.v1.contract import SOFT_INJECTION_BASE

from .conditioners import Conditioner, TextTime

if TYPE_CHECKING:
    import torch

DOWN, MID = "down_block_additional_residuals", "mid_block_additional_residual"  # the UNet's arguments


@dataclass(eq=False)
class RowUnit:
    """One unit of a row: its ControlNet (the module itself: an eviction from the cache leaves it to the
    rows running with it), its checked settings (control_checks.ControlSpec) and its prepared images."""

    net: Any
    spec: Any
    prepare: Any  # (height, width) -> the control image tensor (1, 3, height, width) on the net's device
    _by_size: dict = field(default_factory=dict)  # (height, width) -> prepared: the row's size only

    def image(self, size: tuple[int, int]) -> torch.Tensor:
        if size not in self._by_size:
            self._by_size = {size: self.prepare(size)}  # the old size's is not needed again
        return self._by_size[size]

    def steers(self, row) -> bool:
        """diffusers' controlnet_keep at the row's step (its phase's calls: the pipeline's len(timesteps))."""
        i, n = row.index, len(row.timesteps)
        return not (i / n < self.spec.guidance_start or (i + 1) / n > self.spec.guidance_end)

    def scale(self, j: int, m: int) -> float:
        """The factor of residual j of m."""
        return self.spec.weight * (SOFT_INJECTION_BASE ** (m - 1 - j) if self.spec.soft else 1.0)


class ControlUnits(Conditioner):
    """A row's ControlNet units; `unet_kwargs` gives the residuals `before_call` computed for this call."""

    def __init__(self, units: list[RowUnit]):
        self.units = units
        self._parts: dict[int, list] = {}  # unit index -> its scaled residuals this call
        self._residuals: dict[tuple, torch.Tensor] = {}

    def unet_kwargs(self, row) -> dict[tuple, torch.Tensor]:
        return self._residuals

    def resized(self, row) -> None:
        """The row's maps made at its new size now (inside the resize's fault handling, not a UNet call's)."""
        for unit in self.units:
            unit.image(row.phase.size)

    @classmethod
    def before_call(cls, members: list[tuple]) -> None:
        by_net: dict[int, list] = {}  # one ControlNet call per module, over the rows it steers now
        for row, cond, x in members:
            cond._parts, cond._residuals = {}, {}
            for index, unit in enumerate(cond.units):
                if unit.steers(row):
                    by_net.setdefault(id(unit.net), []).append((row, cond, index, unit, x))
        for items in by_net.values():
            _run(items)
        for _row, cond, _x in members:
            cond._residuals = _summed([cond._parts[i] for i in sorted(cond._parts)])


def _run(items: list[tuple]) -> None:
    """One ControlNet over the rows of `items` ((row, conditioner, unit index, unit, x)); each row's
    residuals, scaled, are kept on its conditioner."""
    import torch

    net = items[0][3].net
    xs, times, embeds, images, text_embeds, time_ids, halves = [], [], [], [], [], [], []
    for row, cond, _index, unit, x in items:
        half = unit.spec.conditional_only and row.guided
        take = slice(1, 2) if half else slice(None)
        xs.append(x[take])
        times.append(row.timestep.reshape(1).expand(xs[-1].shape[0]))
        embeds.append(row.embeds[take])
        images.append(unit.image(row.phase.size).expand(xs[-1].shape[0], -1, -1, -1))
        text_time = next((c for c in row.conditioners if isinstance(c, TextTime)), None)  # the row's now: a
        if text_time is not None:  # hires prompt of its own replaces it
            added = text_time.unet_kwargs(row)
            text_embeds.append(added[("added_cond_kwargs", "text_embeds")][take])
            time_ids.append(added[("added_cond_kwargs", "time_ids")][take])
        halves.append(half)
    added_cond = {"text_embeds": torch.cat(text_embeds), "time_ids": torch.cat(time_ids)} if text_embeds else None
    down, mid = net(torch.cat(xs).to(net.dtype), torch.cat(times), encoder_hidden_states=torch.cat(embeds),
                    controlnet_cond=torch.cat(images), conditioning_scale=1.0, added_cond_kwargs=added_cond,
                    return_dict=False)
    residuals = [*down, mid]
    offset = 0
    for (row, cond, index, unit, x), half, width in zip(items, halves, (x.shape[0] for x in xs)):
        parts = []
        for j, residual in enumerate(residuals):
            part = residual[offset: offset + width] * unit.scale(j, len(residuals))
            parts.append(torch.cat([torch.zeros_like(part), part]) if half else part)
        cond._parts[index] = parts
        offset += width


def _summed(per_unit: list[list]) -> dict[tuple, torch.Tensor]:
    """The UNet's residual arguments: the units' residuals added up in unit order (as MultiControlNet)."""
    if not per_unit:
        return {}
    total = list(per_unit[0])
    for parts in per_unit[1:]:
        total = [a + b for a, b in zip(total, parts)]
    kwargs = {(DOWN, j): residual for j, residual in enumerate(total[:-1])}
    kwargs[(MID,)] = total[-1]
    return kwargs


def attach_control(pipe, row, control, nets) -> None:
    """Give `row` its request's units (`control`: control_checks.ControlSpec, `nets`: their loaded
    ControlNets), each image prepared as the ControlNet pipelines prepare theirs."""
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor, do_convert_rgb=True, do_normalize=False)
    units = []
    for spec, net in zip(control, nets):
        def prepare(size, spec=spec, net=net):
            import torch

            height, width = size
            tensor = processor.preprocess(spec.image_at(width, height), height=height,
                                          width=width).to(dtype=torch.float32)
            return tensor.to(device=net.device, dtype=net.dtype)

        units.append(RowUnit(net, spec, prepare))
    row.attach(ControlUnits(units))
