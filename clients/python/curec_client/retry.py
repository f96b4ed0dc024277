"""The client's retry policy: a gRPC service config that retries UNAVAILABLE on idempotent calls.

A replica that drains (SIGTERM), restarts or is killed behind a load balancer answers some
calls with UNAVAILABLE (connection refused or reset, GOAWAY, or the balancer's 502). Calls
that change nothing on the daemon, or that give the same answer when repeated, are safe to
send again: grpcio does so under this policy, with exponential backoff and jitter, within
the call's deadline. Calls that create something (``Submit``, ``Upload``, ``Load``,
``Reload``, ``Unload``, ``Cancel``, the repository's load and unload) are never retried:
a retry could run them twice.

Streaming calls in the list (``Watch``, ``Generate``, ``GenerateReason``) are retried only
until the daemon sends its first message (gRPC's rule); a stream broken later is the
caller's to reopen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "DEFAULT_RETRY_POLICY"]

#: Every method the policy retries, by fully qualified service name. A method not listed
#: (and every method of a service not listed) is never retried.
IDEMPOTENT_METHODS: Mapping[str, Tuple[str, ...]] = {
    "curec.v1.RecommendService": ("Score", "Recommend"),
    "curec.v1.RewardService": ("Score", "ScoreReasons", "Embed"),
    "curec.v1.JobService": ("Get", "List", "Watch"),
    "curec.v1.ModelService": ("List", "GetReport"),
    "curec.v1.PluginService": ("List",),
    "curec.v1.DatasetService": ("List",),
    "curec.v1.GenerationService": ("Generate", "GenerateReason"),
    "grpc.health.v1.Health": ("Check",),
    "inference.GRPCInferenceService": (
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
        "ModelInfer", "ModelStatistics", "RepositoryIndex",
    ),
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently an idempotent call is retried after UNAVAILABLE.

    The n-th retry waits a random time between 0 and
    ``min(initial_backoff * backoff_multiplier ** (n - 1), max_backoff)`` seconds (gRPC's
    retry design, A6). gRPC clients cap ``max_attempts`` at 5.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    backoff_multiplier: float = 2.0
    #: Seconds the channel waits before it reconnects after a failed connection, at first
    #: and at most (grpcio's defaults are 1 s and 120 s); short, so a retry finds a replica
    #: that is back, or the load balancer, soon.
    initial_reconnect_backoff: float = 0.1
    max_reconnect_backoff: float = 2.0
    methods: Mapping[str, Tuple[str, ...]] = field(default_factory=lambda: dict(IDEMPOTENT_METHODS))

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= 5:
            raise ValueError("max_attempts must be between 2 and 5 (gRPC caps it at 5)")
        if self.initial_backoff <= 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("backoffs must be positive, with max_backoff >= initial_backoff")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be at least 1")
        if self.initial_reconnect_backoff <= 0 or self.max_reconnect_backoff < self.initial_reconnect_backoff:
            raise ValueError("reconnect backoffs must be positive, with max_reconnect_backoff >= initial_reconnect_backoff")

    def service_config(self) -> Dict[str, Any]:
        """The gRPC service config (as a dict) carrying this policy."""
        names = [{"service": service, "method": method}
                 for service, methods in sorted(self.methods.items()) for method in methods]
        return {
            "methodConfig": [{
                "name": names,
                "retryPolicy": {
                    "maxAttempts": self.max_attempts,
                    "initialBackoff": _duration(self.initial_backoff),
                    "maxBackoff": _duration(self.max_backoff),
                    "backoffMultiplier": self.backoff_multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }],
        }

    def channel_options(self, given: Sequence[Tuple[str, Any]] = ()) -> List[Tuple[str, Any]]:
        """grpcio channel options that apply the policy, leaving out any option the caller
        already set in ``given`` (a caller's own service config wins)."""
        set_by_caller = {name for name, _ in given}
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(self.service_config(), separators=(",", ":"))),
            ("grpc.initial_reconnect_backoff_ms", int(self.initial_reconnect_backoff * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(self.max_reconnect_backoff * 1000)),
        ]
        return [(name, value) for name, value in options if name not in set_by_caller]


def _duration(seconds: float) -> str:
    """A protobuf JSON duration ("0.25s")."""
    return ("%.3f" % seconds).rstrip("0").rstrip(".") + "s"


#: The policy ``Client`` and ``open_channel`` use unless told ``retry=False``.
DEFAULT_RETRY_POLICY = RetryPolicy()
