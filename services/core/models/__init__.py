"""Models: loading a pipeline, the built-in presets (tiny, sd15), schedulers by name."""
