"""The step engine: requests join and leave one shared denoising loop at every step.

rows.py holds a request image's state from admission to its answer; denoise.py steps many rows in
one UNet call and decodes finished ones. A mode admits its own rows (its `admit`), with the
pipeline's own building blocks, so each row starts where diffusers' pipeline starts for its seed.
"""
