"""What the three modes share, in rooms: rpc/ (the gRPC face), work/ (queue, the engine interface, the pipeline engine, estimates, metrics),
models/ (loading, presets, schedulers), imaging/ (images, masks, previews); config, the Mode interface,
request checks and the GenerationSpec they build. Nothing here imports a mode."""
