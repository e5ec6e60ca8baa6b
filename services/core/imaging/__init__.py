"""Images: decoding with limits, fitting, encoding with infotext; inpainting masks."""
