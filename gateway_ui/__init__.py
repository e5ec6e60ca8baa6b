"""The Gradio web gateway: three tabs, each routed to its mode's gRPC service. Holds no model."""
