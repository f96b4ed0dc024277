"""Python client for the CURec serve daemon (``curecd``).

Example::

    from curec_client import Client

    with Client("127.0.0.1:50051") as client:
        for item in client.recommend("196", k=5):
            print(item.item_id, item.title, round(item.score, 3))
        print(client.generate([("user", "Recommend a film for a rainy day.")], max_tokens=64).text)

The generated protobuf/gRPC stubs are available as ``curec_client.pb`` (the modules
``recommend_pb2``, ``job_pb2_grpc``, ...) for calls the wrapper does not cover.
"""

from ._proto.curec import v1 as pb
from ._proto.curec.v1 import (  # noqa: F401  (re-exported through ``pb``)
    dataset_pb2,
    dataset_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    plugin_pb2,
    plugin_pb2_grpc,
    recommend_pb2,
    recommend_pb2_grpc,
    reward_pb2,
    reward_pb2_grpc,
)
from .client import DATASET_CHUNK_BYTES, DEFAULT_ADDRESS, DEFAULT_TIMEOUT, Client, GenerationStream, open_channel
from .errors import CurecError
from .retry import DEFAULT_RETRY_POLICY, IDEMPOTENT_METHODS, RetryPolicy
from .types import (
    ChatMessage,
    ChatRole,
    Dataset,
    FinishReason,
    Generation,
    Job,
    JobEvent,
    JobState,
    Model,
    ModelVersion,
    PluginKind,
    PluginList,
    PluginStatus,
    Embeddings,
    ReasonReward,
    RecommendedItem,
    Recommendations,
    Report,
    RewardTriple,
    Rewards,
    Scores,
    VerifierFailure,
)

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "ChatRole",
    "Client",
    "CurecError",
    "DATASET_CHUNK_BYTES",
    "DEFAULT_RETRY_POLICY",
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT",
    "Dataset",
    "open_channel",
    "Embeddings",
    "FinishReason",
    "Generation",
    "GenerationStream",
    "IDEMPOTENT_METHODS",
    "Job",
    "JobEvent",
    "JobState",
    "Model",
    "ModelVersion",
    "PluginKind",
    "PluginList",
    "PluginStatus",
    "ReasonReward",
    "RecommendedItem",
    "Recommendations",
    "Report",
    "RetryPolicy",
    "RewardTriple",
    "Rewards",
    "Scores",
    "VerifierFailure",
    "pb",
]
