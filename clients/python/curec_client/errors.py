"""The one exception type the client raises for failed calls."""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = ["CurecError"]


class CurecError(Exception):
    """A call to the daemon failed.

    Attributes:
        code: the gRPC status (e.g. ``grpc.StatusCode.NOT_FOUND`` for an unknown user or item,
            ``INVALID_ARGUMENT`` for a malformed request, ``FAILED_PRECONDITION`` for an
            untrained plugin or a job that has already ended, ``UNAVAILABLE`` when the daemon
            cannot be reached, ``DEADLINE_EXCEEDED`` when the timeout passed).
        message: the server's message, which names the offending field and value.
        method: the full RPC name, e.g. ``"/curec.v1.RecommendService/Recommend"``.
    """

    def __init__(self, code: grpc.StatusCode, message: str, method: str = "") -> None:
        self.code = code
        self.message = message
        self.method = method
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = " (%s)" % self.method if self.method else ""
        return "%s: %s%s" % (self.code.name, self.message, where)

    def __repr__(self) -> str:
        return "CurecError(code=%s, message=%r, method=%r)" % (self.code, self.message, self.method)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, method: str = "") -> "CurecError":
        """Converts an error raised by grpcio (a ``grpc.Call`` that failed)."""
        code: Optional[grpc.StatusCode] = None
        message = ""
        if isinstance(error, grpc.Call):
            code = error.code()
            message = error.details() or ""
        if code is None:
            code = grpc.StatusCode.UNKNOWN
            message = message or str(error)
        return cls(code, message, method)
