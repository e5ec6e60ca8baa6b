"""The img2img service: `python -m services.img2img --help`."""
