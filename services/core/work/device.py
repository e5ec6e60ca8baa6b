"""What both engines do with the device beside running models: free memory after a failure, and wait
for queued work to run (for honest timings)."""

from __future__ import annotations

import gc


def release_device_memory() -> None:
    """After running out of device memory: free what the failed call held."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def wait_for_device(device) -> None:
    """Wait until the device has run what was queued on it: CUDA (and MPS) run behind the Python that
    queues their work, so a call's time is its own only after this."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
