"""The txt2img service: `python -m services.txt2img --help`."""
