"""`make bench`'s loop section: the step engine's own cost per step outside the UNet call, rows stepped
alone (`--cohorts false`) against rows stepped as one cohort, and the tensor operations it runs per step.

In-process, tiny model, txt2img 64x64, guidance 7.5, DPM++ 2M: n images of one request (a crowd that
arrived together). The UNet is timed around its call (and its operations are not counted); the rest of
unet_step is the loop's own: inputs built, guidance, scheduler steps.
"""

from __future__ import annotations

import statistics
import time

STEPS = 12  # per run; the first is left out (cohorts form in it, schedulers find their step index)


class _TimedUNet:
    """The UNet, timed around each call; the operation counter pauses inside it."""

    def __init__(self, unet, counter=None):
        self.unet, self.counter, self.seconds = unet, counter, 0.0

    def __call__(self, *args, **kwargs):
        if self.counter is not None:
            self.counter.paused = True
        started = time.perf_counter()
        try:
            return self.unet(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            if self.counter is not None:
                self.counter.paused = False


def _counter():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        """Tensor operations (aten calls) outside the UNet."""

        def __init__(self):
            super().__init__()
            self.ops, self.paused = 0, False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not self.paused:
                self.ops += 1
            return func(*args, **(kwargs or {}))

    return Counter()


def _rows(pipe, n: int, steps: int = STEPS):
    from services.client import make_request
    from services.core.config import load_config
    from services.core.engine.rows import encode_prompt
    from services.core.models import schedulers
    from services.txt2img.mode import MODE, admit

    config = load_config(MODE, ["--model", "tiny", "--max-images", "16"], environ={})
    spec = MODE.check(make_request("txt2img", "a lighthouse at dusk", steps=steps, num_images=n, seed=3, width=64,
                                   height=64, scheduler="dpmpp_2m", guidance_scale=7.5), config)
    base = pipe.scheduler
    try:
        prompt = encode_prompt(pipe, spec)
        return [admit(pipe, spec, prompt, seed, schedulers.fresh(spec.scheduler, base, spec.schedule_type, (seed,)))
                for seed in spec.seeds]
    finally:
        pipe.scheduler = base


def loop_step(pipe, n: int, cohorts: bool, count: bool = False) -> tuple[float, float]:
    """(seconds per step outside the UNet call, tensor operations per step outside it) for n rows."""
    import torch

    from services.core.engine.denoise import unet_step

    with torch.inference_mode():
        rows = _rows(pipe, n)
        counter = _counter() if count else None
        timed = _TimedUNet(pipe.unet, counter)
        unet_step(timed, rows, cohorts=cohorts)  # the first step: cohorts form
        timed.seconds, per_step = 0.0, []
        for _ in range(STEPS - 2):
            before = timed.seconds
            started = time.perf_counter()
            if counter is not None:
                with counter:
                    unet_step(timed, rows, cohorts=cohorts)
            else:
                unet_step(timed, rows, cohorts=cohorts)
            per_step.append(time.perf_counter() - started - (timed.seconds - before))
        ops = counter.ops / (STEPS - 2) if counter is not None else 0.0
    return statistics.median(per_step), ops


def bench_loop(repeats: int) -> list[tuple]:
    import torch

    from services.core.models.presets import build_tiny_pipeline

    pipe = build_tiny_pipeline(False)
    torch.manual_seed(0)
    out = []
    for n in (2, 16):
        times = {True: [], False: []}
        for _ in range(repeats):  # alternating, the median of each
            for cohorts in (False, True):
                times[cohorts].append(loop_step(pipe, n, cohorts)[0])
        alone, together = statistics.median(times[False]), statistics.median(times[True])
        out.append((f"loop: own time per step outside the UNet, {n} rows (alone vs cohort)",
                    f"{alone * 1000:.2f} vs {together * 1000:.2f} ms", f"{alone / together:.1f}x less",
                    "less with a cohort, more so the more rows"))
    counts = {cohorts: [loop_step(pipe, n, cohorts, count=True)[1] for n in (1, 2, 8, 16)] for cohorts in (False, True)}
    for cohorts, label in ((False, "alone"), (True, "cohort")):
        ops = counts[cohorts]
        out.append((f"loop: tensor ops per step outside the UNet at 1/2/8/16 rows ({label})",
                    " / ".join(f"{o:.0f}" for o in ops), f"+{(ops[-1] - ops[1]) / 14:.1f} per row past 2",
                    "a cohort's stop growing per row" if cohorts else "grow per row"))
    return out
