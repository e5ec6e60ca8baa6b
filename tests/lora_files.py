"""Small random LoRAs for the embedded tiny model, written as the tools people use write them: the
services' own writer (services/core/models/lora_writer.py), which also makes `make run`'s sample LoRAs."""

from services.core.models.lora_writer import RANK, TEXT_TARGETS, UNET_TARGETS, write_lora

__all__ = ["RANK", "TEXT_TARGETS", "UNET_TARGETS", "write_lora"]
