"""The gRPC face: server bootstrap, the servicer, interceptors, statuses, transport security."""
