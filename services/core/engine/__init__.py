"""The step engine: requests join and leave one shared denoising loop at every step.

Modelled on the engine cores of LLM servers (schedule -> execute -> update): scheduler.py decides
from plain data, runner.py executes a decided call, loop.py is the thread joining them to the
requests' lives. rows.py holds a request image's state and plan from admission to its answer;
conditioners.py what a row adds to its UNet calls; denoise.py steps many rows in one UNet call and
decodes finished ones. A mode admits its own rows (its `admit`), with the pipeline's own building
blocks, so each row starts where diffusers' pipeline starts for its seed.
"""
