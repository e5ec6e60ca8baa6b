"""The one way our interceptors wrap an RPC handler: same serializers, behaviour wrapped."""

from __future__ import annotations

from typing import Callable

import grpc


def wrap_handler(handler, around_unary: Callable, around_stream: Callable):
    """`handler` with its behaviour replaced by around_unary(inner) or around_stream(inner).

    Our services only have unary-unary and unary-stream methods; other kinds pass through.
    """
    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            around_unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            around_stream(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
