"""The inpaint service: `python -m services.inpaint --help`."""
