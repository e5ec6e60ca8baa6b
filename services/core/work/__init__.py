"""The work: the bounded queue, the Engine interface and the pipeline engine, estimates, metrics, the runtime."""
