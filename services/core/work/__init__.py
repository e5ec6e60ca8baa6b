"""The work: the bounded queue, the one worker that owns the pipeline, estimates, metrics, the runtime."""
