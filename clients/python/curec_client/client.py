"""A typed client for the CURec serve daemon (``curecd``).

Wraps the gRPC stubs of ``Protos/curec/v1`` (recommend, reward, plugin, job, model,
generation and dataset services): arguments are plain Python values, answers are the dataclasses of
:mod:`curec_client.types`, and every failed call raises :class:`curec_client.CurecError`.
"""

from __future__ import annotations

import io
import json
import os
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import grpc

from ._proto.curec.v1 import (
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
from .errors import CurecError
from .retry import DEFAULT_RETRY_POLICY, RetryPolicy
from .types import (
    ChatMessage,
    Dataset,
    Generation,
    Job,
    JobEvent,
    JobState,
    Model,
    PluginList,
    PluginStatus,
    Embeddings,
    ReasonReward,
    Recommendations,
    Report,
    RewardTriple,
    Rewards,
    Scores,
)

__all__ = ["Client", "open_channel", "GenerationStream", "DEFAULT_ADDRESS", "DEFAULT_TIMEOUT", "DATASET_CHUNK_BYTES"]

#: Where ``scripts/run`` serves by default.
DEFAULT_ADDRESS = "127.0.0.1:50051"
#: Seconds a unary call may take unless the client or the call says otherwise.
DEFAULT_TIMEOUT = 30.0

#: A plugin config: raw bytes (e.g. a serialized protobuf for the C popularity plugin),
#: text, or a mapping that is sent as JSON (the bundled Swift plugins).
PluginConfig = Union[bytes, str, Mapping[str, Any]]
#: A reward triple as a dataclass or as a ``(user_id, item_id, reason_embedding)`` tuple.
TripleLike = Union[RewardTriple, Tuple[str, str, Sequence[float]]]

#: A conversation turn: a ChatMessage, a ``(role, content)`` pair or a ``{"role", "content"}`` dict.
MessageLike = Union[ChatMessage, Tuple[str, str], Mapping[str, str]]
#: A dataset example: ``{"messages": [...]}`` or just the list of its messages.
ExampleLike = Union[Mapping[str, Any], Sequence[MessageLike]]
#: What ``upload_dataset`` reads: a path, the file's bytes, a binary file object, or examples.
DatasetSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, io.BufferedIOBase, Iterable[ExampleLike]]

#: Bytes per upload message that ``upload_dataset`` sends by default.
DATASET_CHUNK_BYTES = 256 * 1024
#: The daemon's limit on one upload message's chunk.
_MAX_CHUNK_BYTES = 1 << 20

_UNSET: Any = object()


def _config_bytes(config: PluginConfig) -> bytes:
    if isinstance(config, bytes):
        return config
    if isinstance(config, str):
        return config.encode("utf-8")
    if isinstance(config, Mapping):
        return json.dumps(dict(config), separators=(",", ":")).encode("utf-8")
    raise TypeError("plugin config must be bytes, str or a mapping, not %s" % type(config).__name__)


def _parameter_text(name: str, value: Any) -> str:
    """Job parameters are strings on the wire; booleans become "true"/"false",
    mappings and lists JSON, sequences of numbers (cutoffs) comma-separated."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"))
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError("job parameter %r: cannot send a %s" % (name, type(value).__name__))


def _sampling(
    temperature: Optional[float],
    top_k: Optional[int],
    top_p: Optional[float],
    max_tokens: int,
    seed: int,
    repetition_penalty: Optional[float] = None,
) -> Any:
    """SamplingOptions with only the given optional fields set (unset ones take the daemon's defaults)."""
    sampling = generation_pb2.SamplingOptions(max_tokens=max_tokens, seed=seed)
    if temperature is not None:
        sampling.temperature = temperature
    if top_k is not None:
        sampling.top_k = top_k
    if top_p is not None:
        sampling.top_p = top_p
    if repetition_penalty is not None:
        sampling.repetition_penalty = repetition_penalty
    return sampling


def _conversation(messages: Iterable[MessageLike]) -> Any:
    if isinstance(messages, (str, bytes)) or isinstance(messages, Mapping):
        raise TypeError("messages must be a list of (role, content) pairs, {'role', 'content'} dicts or "
                        "ChatMessages (for raw text use prompt=, or [('user', text)] for one user turn)")
    return generation_pb2.ChatConversation(messages=[ChatMessage.parse(m).to_proto() for m in messages])


def _example_json(example: ExampleLike) -> Dict[str, Any]:
    """A dataset example as its JSON object; message pairs and ChatMessages become role/content
    objects, mappings pass unchanged (the daemon checks them and names the bad line)."""

    def message(value: Any) -> Any:
        return dict(value) if isinstance(value, Mapping) else ChatMessage.parse(value).to_json()

    if isinstance(example, Mapping):
        body = dict(example)
        if isinstance(body.get("messages"), (list, tuple)):
            body["messages"] = [message(m) for m in body["messages"]]
        return body
    if isinstance(example, (str, bytes)):
        raise TypeError("a dataset example must be a {'messages': [...]} mapping or a list of messages, not %s"
                        % type(example).__name__)
    return {"messages": [message(m) for m in example]}


def _read_chunks(handle: Any, chunk_size: int) -> Iterator[bytes]:
    while True:
        chunk = handle.read(chunk_size)
        if not chunk:
            return
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError("a dataset file object must be opened in binary mode ('rb')")
        yield bytes(chunk)


def _example_chunks(examples: Iterable[ExampleLike], chunk_size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for example in examples:
        buffer += json.dumps(_example_json(example), ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")
        buffer += b"\n"
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    if buffer:
        yield bytes(buffer)


def _dataset_chunks(source: Any, chunk_size: int) -> Iterator[bytes]:
    """The bytes of a dataset source (not a path: the caller opens it) in chunks of at most
    ``chunk_size``; file objects are read chunk by chunk."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B")
        return (bytes(data[start:start + chunk_size]) for start in range(0, len(data), chunk_size))
    if hasattr(source, "read"):
        return _read_chunks(source, chunk_size)
    if isinstance(source, Iterable):
        return _example_chunks(source, chunk_size)
    raise TypeError("a dataset source must be a path, bytes, a binary file object or an iterable of examples, "
                    "not %s" % type(source).__name__)


class GenerationStream:
    """A running ``GenerationService.Generate`` call, as returned by :meth:`Client.generate_stream`.

    Iterating yields the generated text piece by piece as it arrives (empty pieces, e.g. half
    of a multi-byte character, are left out). When the iteration ends, :attr:`result` holds
    the :class:`Generation` (the whole text, finish reason and token counts)::

        stream = client.generate_stream([("user", "Name three films about space.")], max_tokens=64)
        for piece in stream:
            print(piece, end="", flush=True)
        print("\n", stream.result.finish_reason.name, stream.result.completion_tokens)

    :meth:`finish` reads whatever is left and returns the result. Stopping early (``break``)
    and then calling :meth:`cancel`, leaving a ``with`` block, or dropping the stream
    cancels the generation on the server. Iterating, ``finish`` and ``result`` are meant for
    one thread.

    Raises:
        CurecError: while iterating or in ``finish``, e.g. NOT_FOUND for an unknown model,
            INVALID_ARGUMENT for bad input, DEADLINE_EXCEEDED when the timeout passed.
    """

    _METHOD = "/curec.v1.GenerationService/Generate"

    def __init__(self, call: Any) -> None:
        self._call = call
        self._result: Optional[Generation] = None
        self._parts: List[str] = []
        self._pieces = self._read()

    def _read(self) -> Iterator[str]:
        try:
            for message in self._call:
                if message.final:
                    self._result = Generation.from_proto(message)
                elif message.text and self._result is None:
                    self._parts.append(message.text)
                    yield message.text
        except grpc.RpcError as error:
            raise CurecError.from_rpc_error(error, self._METHOD) from None
        finally:
            self._call.cancel()
        if self._result is None:
            raise CurecError(grpc.StatusCode.INTERNAL, "the generation stream ended without its final message",
                             self._METHOD)

    def __iter__(self) -> "GenerationStream":
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    @property
    def result(self) -> Optional[Generation]:
        """The :class:`Generation`, once the final message has arrived (None before)."""
        return self._result

    @property
    def text(self) -> str:
        """The text streamed so far."""
        return "".join(self._parts)

    def finish(self) -> Generation:
        """Reads the rest of the stream and returns the :class:`Generation`."""
        for _ in self._pieces:
            pass
        if self._result is None:  # only after a cancelled or failed stream was already read
            raise CurecError(grpc.StatusCode.CANCELLED, "the generation stream was stopped before its end",
                             self._METHOD)
        return self._result

    def cancel(self) -> None:
        """Stops the generation on the server (harmless once the stream has ended)."""
        self._call.cancel()
        self._pieces.close()

    def __enter__(self) -> "GenerationStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


def _read_pem(value: Union[None, str, bytes, "os.PathLike[str]"]) -> Optional[bytes]:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(os.fspath(value), "rb") as f:
        return f.read()


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token as metadata on a cleartext channel (loopback or the admin
    socket), where grpcio does not send call credentials."""

    def __init__(self, token: str) -> None:
        self._pair = ("authorization", "Bearer " + token)

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ()) + [self._pair]
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _CallDetails(details, metadata)

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: Any, metadata: List[Tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


def open_channel(
    address: str,
    *,
    tls: bool = False,
    tls_ca: Union[None, str, bytes, "os.PathLike[str]"] = None,
    tls_cert: Union[None, str, bytes, "os.PathLike[str]"] = None,
    tls_key: Union[None, str, bytes, "os.PathLike[str]"] = None,
    server_name: Optional[str] = None,
    token: Optional[str] = None,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
    retry: Union[bool, RetryPolicy] = True,
) -> grpc.Channel:
    """A grpcio channel to ``curecd``: TLS when ``tls`` or any ``tls_*`` is given (CA and
    client certificate as paths or PEM bytes; the system's CAs without ``tls_ca``), with the
    bearer ``token`` as call credentials (or as metadata on a cleartext channel).

    ``retry`` (on by default) retries idempotent calls that fail with UNAVAILABLE under
    :data:`curec_client.retry.DEFAULT_RETRY_POLICY`, or under the :class:`RetryPolicy`
    given; ``False`` sets no retry policy (grpcio's own transparent retries of calls that
    never reached the daemon remain). A ``grpc.service_config`` in ``options`` wins."""
    channel_options = list(options or ())
    if retry:
        policy = retry if isinstance(retry, RetryPolicy) else DEFAULT_RETRY_POLICY
        channel_options += policy.channel_options(channel_options)
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    if tls or tls_ca is not None or tls_cert is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read_pem(tls_ca),
            private_key=_read_pem(tls_key),
            certificate_chain=_read_pem(tls_cert),
        )
        if token:
            # The standard access-token credentials: `authorization: Bearer <token>`.
            credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
        return grpc.secure_channel(address, credentials, options=channel_options)
    channel = grpc.insecure_channel(address, options=channel_options)
    return grpc.intercept_channel(channel, _BearerInterceptor(token)) if token else channel


class Client:
    """A connection to one ``curecd``.

    Example::

        with Client("127.0.0.1:50051") as client:
            for item in client.recommend("196", k=5):
                print(item.item_id, item.title, round(item.score, 3))

    Over TLS with a bearer token (see docs/security.md)::

        client = Client("curec.example.org:50051", tls_ca="ca.pem", token=os.environ["CUREC_TOKEN"])

    Args:
        address: ``host:port`` of the daemon, or ``unix:/path`` for its admin socket.
        timeout: seconds each unary call may take (None: no deadline). ``watch`` streams
            have no deadline unless one is passed to it.
        options: extra grpcio channel options, e.g. ``[("grpc.max_receive_message_length", n)]``.
        channel: an existing ``grpc.Channel`` to use instead of opening one; the client
            then does not close it.
        tls: connect with TLS (implied by ``tls_ca`` or ``tls_cert``), trusting the system's
            CAs unless ``tls_ca`` names one.
        tls_ca, tls_cert, tls_key: PEM paths or bytes: the CA the daemon's certificate chains
            to, and a client certificate and key for a daemon that requires mutual TLS.
        server_name: the name the daemon's certificate must carry, if not the address's host.
        token: bearer token sent with every call (``authorization: Bearer <token>``).
        retry: retry idempotent calls (scoring, recommending, reading jobs, models,
            datasets, health, the inference protocol's reads and ModelInfer) that fail
            with UNAVAILABLE, as a replica restarts or drains behind a load balancer: True
            (the default, :data:`curec_client.retry.DEFAULT_RETRY_POLICY`), a
            :class:`curec_client.RetryPolicy`, or False. Calls that create or change
            something (submit, upload, load, cancel, ...) are never retried.

    The client is thread-safe (grpcio channels are) and closes its channel on ``close()``
    or when used as a context manager.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        *,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
        channel: Optional[grpc.Channel] = None,
        tls: bool = False,
        tls_ca: Union[None, str, bytes, "os.PathLike[str]"] = None,
        tls_cert: Union[None, str, bytes, "os.PathLike[str]"] = None,
        tls_key: Union[None, str, bytes, "os.PathLike[str]"] = None,
        server_name: Optional[str] = None,
        token: Optional[str] = None,
        retry: Union[bool, RetryPolicy] = True,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._owns_channel = channel is None
        self._channel: grpc.Channel = channel if channel is not None else open_channel(
            address, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            server_name=server_name, token=token, options=options, retry=retry,
        )
        self._jobs = job_pb2_grpc.JobServiceStub(self._channel)
        self._generation = generation_pb2_grpc.GenerationServiceStub(self._channel)
        self._datasets = dataset_pb2_grpc.DatasetServiceStub(self._channel)
        self._stubs: Dict[str, Any] = {
            "RecommendService": recommend_pb2_grpc.RecommendServiceStub(self._channel),
            "RewardService": reward_pb2_grpc.RewardServiceStub(self._channel),
            "PluginService": plugin_pb2_grpc.PluginServiceStub(self._channel),
            "JobService": self._jobs,
            "ModelService": model_pb2_grpc.ModelServiceStub(self._channel),
            "DatasetService": self._datasets,
        }

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Closes the channel (if this client opened it). Calls in flight are cancelled."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Client(%r, timeout=%r)" % (self.address, self.timeout)

    @property
    def channel(self) -> grpc.Channel:
        """The underlying grpcio channel, for calling stubs directly."""
        return self._channel

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; raises CurecError(UNAVAILABLE) after ``timeout`` s."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise CurecError(
                grpc.StatusCode.UNAVAILABLE, "no connection to %s within %gs" % (self.address, timeout)
            ) from None

    def _call(self, service: str, method: str, request: Any, timeout: Any) -> Any:
        stub = self._stubs[service]
        seconds = self.timeout if timeout is _UNSET else timeout
        try:
            return getattr(stub, method)(request, timeout=seconds)
        except grpc.RpcError as error:
            raise CurecError.from_rpc_error(error, "/curec.v1.%s/%s" % (service, method)) from None

    # ------------------------------------------------------------ recommendation

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        plugin: str = "",
        *,
        with_reasons: bool = False,
        reason_model: str = "",
        reason_source: str = "auto",
        timeout: Optional[float] = _UNSET,
    ) -> Recommendations:
        """The ``k`` best items for ``user_id`` over the whole catalogue, best first.

        Args:
            user_id: the dataset's user id (e.g. ``"196"``).
            k: how many items, 1 to 1,000.
            exclude_seen: leave out items the user interacted with in the training data.
            plugin: recommender instance; empty means the daemon's default.
            with_reasons: also return a reason for each item.
            reason_model: language model name for generated reasons; for ``"generate"`` empty
                means ``"lm"``, for ``"pair"`` the newest tuned reason model, else ``"smollm2"``.
            reason_source: ``"auto"`` (the pipeline's corrected reason table when it exists,
                else generation), ``"table"`` (the item's table reason, the same for every user;
                FAILED_PRECONDITION without a table), ``"generate"`` (the language model writes
                each reason; slower, FAILED_PRECONDITION if no model has been trained) or
                ``"pair"`` (why this user gets this item: the tuned chat model's reason, checked
                by the verifier and cached per user, item and model version).

        Raises:
            CurecError: NOT_FOUND for an unknown user or plugin, INVALID_ARGUMENT for a bad k.
        """
        sources = {"auto": recommend_pb2.REASON_SOURCE_AUTO, "table": recommend_pb2.REASON_SOURCE_TABLE,
                   "generate": recommend_pb2.REASON_SOURCE_GENERATE, "pair": recommend_pb2.REASON_SOURCE_PAIR}
        if reason_source not in sources:
            raise ValueError(f"reason_source must be one of {sorted(sources)}, not {reason_source!r}")
        request = recommend_pb2.RecommendRequest(user_id=str(user_id), k=k, exclude_seen=exclude_seen, plugin=plugin,
                                                 with_reasons=with_reasons, reason_model=reason_model,
                                                 reason_source=sources[reason_source])
        return Recommendations.from_proto(self._call("RecommendService", "Recommend", request, timeout))

    def score(
        self,
        user_id: str,
        item_ids: Iterable[str],
        plugin: str = "",
        *,
        timeout: Optional[float] = _UNSET,
    ) -> Scores:
        """Scores candidate items (at most 10,000) for one user; scores come in request order.

        Raises:
            CurecError: NOT_FOUND for an unknown user, item or plugin.
        """
        ids = [str(item) for item in item_ids]
        request = recommend_pb2.ScoreRequest(user_id=str(user_id), item_ids=ids, plugin=plugin)
        response = self._call("RecommendService", "Score", request, timeout)
        return Scores(item_ids=tuple(ids), scores=tuple(response.scores), served_by=response.served_by)

    # ------------------------------------------------------------ reward

    def reward(
        self,
        triples: Iterable[TripleLike],
        plugin: str = "",
        *,
        timeout: Optional[float] = _UNSET,
    ) -> Rewards:
        """Scores recommendation reasons with a reward-model plugin.

        Args:
            triples: :class:`RewardTriple` values or ``(user_id, item_id, reason_embedding)``
                tuples; each embedding's length must be the plugin's ``reason_embedding_dim``.
            plugin: reward-model instance; empty means the daemon's default.

        Returns:
            one reward per triple, in order.
        """
        messages = []
        for triple in triples:
            if isinstance(triple, RewardTriple):
                user_id, item_id, embedding = triple.user_id, triple.item_id, triple.reason_embedding
            else:
                user_id, item_id, embedding = triple
            messages.append(
                reward_pb2.RewardTriple(user_id=str(user_id), item_id=str(item_id), reason_embedding=list(embedding))
            )
        response = self._call("RewardService", "Score", reward_pb2.RewardRequest(triples=messages, plugin=plugin), timeout)
        return Rewards(rewards=tuple(response.rewards), served_by=response.served_by)

    def score_reasons(
        self,
        reasons: Iterable[Tuple[str, str, str]],
        *,
        timeout: Optional[float] = _UNSET,
    ) -> List[ReasonReward]:
        """The pipeline's reward of reason texts, with its parts.

        Args:
            reasons: ``(user_id, item_id, text)`` tuples, at most 64, each text at most 4096
                bytes (an empty text is a missing reason: reward -1).

        Returns:
            one :class:`ReasonReward` per reason, in order. The daemon embeds the texts with
            MiniLM; its first call sets the reward model up (up to a minute).

        Raises:
            CurecError: INVALID_ARGUMENT for too many or too long texts, NOT_FOUND for an
                unknown user or item, FAILED_PRECONDITION without MiniLM.
        """
        messages = [reward_pb2.ReasonText(user_id=str(user_id), item_id=str(item_id), text=text)
                    for user_id, item_id, text in reasons]
        response = self._call("RewardService", "ScoreReasons", reward_pb2.ScoreReasonsRequest(reasons=messages),
                              timeout if timeout is not _UNSET else (None if self.timeout is None else max(self.timeout, 300)))
        return [ReasonReward.from_proto(reward) for reward in response.rewards]

    def embed(self, texts: Iterable[str], *, timeout: Optional[float] = _UNSET) -> Embeddings:
        """MiniLM (all-MiniLM-L6-v2) sentence embeddings of at most 256 non-empty texts of at
        most 4096 bytes each: 384 floats per text, unit length, in order.

        Raises:
            CurecError: INVALID_ARGUMENT for an empty, too long or too large batch,
                FAILED_PRECONDITION when the daemon has no MiniLM.
        """
        response = self._call("RewardService", "Embed", reward_pb2.EmbedRequest(texts=list(texts)), timeout)
        return Embeddings(vectors=tuple(tuple(e.values) for e in response.embeddings), dimension=response.dimension,
                          model=response.model)

    # ------------------------------------------------------------ plugins

    def plugins(self, *, timeout: Optional[float] = _UNSET) -> PluginList:
        """The loaded plugin instances and the libraries available to load."""
        return PluginList.from_proto(self._call("PluginService", "List", plugin_pb2.ListPluginsRequest(), timeout))

    def load_plugin(
        self,
        name: str,
        library: str,
        config: Optional[PluginConfig] = None,
        train: bool = True,
        *,
        timeout: Optional[float] = _UNSET,
    ) -> PluginStatus:
        """Loads a new plugin instance ``name`` from ``library``.

        Args:
            name: the new instance's name (ALREADY_EXISTS if taken).
            library: a library file name from ``plugins().available_libraries``
                (e.g. ``"libCURecBPR.so"``, or ``"CURecBPR"``), never a path: the daemon
                loads only from its operator's plugin directories.
            config: the plugin's configuration; a mapping is sent as JSON.
            train: unless a saved artifact can be loaded, train on the daemon's dataset as a
                ``train`` job, which this call waits for (cancelled if the call is).
        """
        request = plugin_pb2.LoadPluginRequest(
            name=name, library=library, config=_config_bytes(config) if config is not None else b"", train=train
        )
        return PluginStatus.from_proto(self._call("PluginService", "Load", request, timeout))

    def reload_plugin(
        self,
        name: str,
        library: str = "",
        config: Optional[PluginConfig] = None,
        *,
        timeout: Optional[float] = _UNSET,
    ) -> PluginStatus:
        """Hot-reloads instance ``name``: a new instance is built beside the serving one and
        swapped in atomically; on failure the old one keeps serving.

        Args:
            library: another library file name in the plugin directories; empty re-reads
                the same one.
            config: a new configuration; None keeps the current one.
        """
        request = plugin_pb2.ReloadPluginRequest(name=name, library=library)
        if config is not None:
            request.config = _config_bytes(config)
        return PluginStatus.from_proto(self._call("PluginService", "Reload", request, timeout))

    def unload_plugin(self, name: str, *, timeout: Optional[float] = _UNSET) -> None:
        """Unloads instance ``name`` once its calls in flight finish."""
        self._call("PluginService", "Unload", plugin_pb2.UnloadPluginRequest(name=name), timeout)

    # ------------------------------------------------------------ jobs

    def submit_job(self, kind: str, parameters: Optional[Mapping[str, Any]] = None, /, **more: Any) -> Job:
        """Queues a job and returns it (usually QUEUED).

        Parameters come as keywords and/or a mapping (for names that are not Python
        identifiers). They are sent as strings: booleans as ``"true"``/``"false"``, mappings
        as JSON, lists of numbers comma-separated. For example::

            client.submit_job("train", library="CURecBPR", config={"factors": 32, "epochs": 20},
                              name="bpr32", serve=True)
            client.submit_job("evaluate", plugin="bpr", split="test", cutoffs=[10, 20])

        Raises:
            CurecError: INVALID_ARGUMENT for an unknown kind or bad parameters,
                RESOURCE_EXHAUSTED when the queue is full.
        """
        merged = dict(parameters or {})
        merged.update(more)
        request = job_pb2.SubmitJobRequest(
            kind=kind, parameters={key: _parameter_text(key, value) for key, value in merged.items()}
        )
        return Job.from_proto(self._call("JobService", "Submit", request, _UNSET))

    def get_job(self, job_id: str, *, timeout: Optional[float] = _UNSET) -> Job:
        """The job's current state. NOT_FOUND for an unknown id."""
        return Job.from_proto(self._call("JobService", "Get", job_pb2.GetJobRequest(id=job_id), timeout))

    def list_jobs(
        self,
        state: Union[JobState, str, int, None] = None,
        kind: Optional[str] = None,
        limit: int = 100,
        *,
        timeout: Optional[float] = _UNSET,
    ) -> List[Job]:
        """At most ``limit`` jobs, newest first, optionally only those in ``state`` and/or of
        ``kind``; fetched in pages of up to 1000 (the daemon's largest page).

        ``state`` may be a :class:`JobState` or its name (``"running"``).
        """
        jobs: List[Job] = []
        token = ""
        while len(jobs) < limit:
            request = job_pb2.ListJobsRequest(
                state="JOB_STATE_" + JobState.parse(state).name if state is not None else "JOB_STATE_UNSPECIFIED",
                kind=kind or "",
                page_size=min(1000, limit - len(jobs)),
                page_token=token,
            )
            response = self._call("JobService", "List", request, timeout)
            jobs += [Job.from_proto(job) for job in response.jobs]
            token = response.next_page_token
            if not token:
                break
        return jobs

    def cancel_job(self, job_id: str, *, timeout: Optional[float] = _UNSET) -> Job:
        """Stops a queued or running job at its next step and returns it.

        Raises:
            CurecError: FAILED_PRECONDITION if the job has already ended, NOT_FOUND if unknown.
        """
        return Job.from_proto(self._call("JobService", "Cancel", job_pb2.CancelJobRequest(id=job_id), timeout))

    def watch(self, job_id: str, *, timeout: Optional[float] = None) -> Iterator[JobEvent]:
        """Streams the job's progress: its current state first, then every change; the
        stream ends after the event with ``final=True``.

        Stopping the iteration early (``break``, or closing the generator) cancels the
        stream on the server. ``timeout`` bounds the whole stream (default: none).

        Raises:
            CurecError: while iterating, e.g. NOT_FOUND for an unknown id.
        """
        call = self._jobs.Watch(job_pb2.WatchJobRequest(id=job_id), timeout=timeout)
        try:
            for message in call:
                yield JobEvent.from_proto(message)
        except grpc.RpcError as error:
            raise CurecError.from_rpc_error(error, "/curec.v1.JobService/Watch") from None
        finally:
            call.cancel()

    def generate_reason(
        self,
        user_id: str,
        item_id: str,
        *,
        model: str = "",
        max_tokens: int = 0,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        seed: int = 0,
        timeout: Optional[float] = None,
    ) -> Iterator[str]:
        """Streams a reason why ``user_id`` would like ``item_id``, piece by piece, from the
        language model ``model`` (default: ``"lm"`` when one exists, else the newest
        ``"curec-reasons"``, else ``"smollm2"``). Join the pieces for the text.

        Raises:
            CurecError: while iterating, e.g. FAILED_PRECONDITION when no model was trained,
                DEADLINE_EXCEEDED when ``timeout`` passes mid-generation.
        """
        request = generation_pb2.GenerateReasonRequest(user_id=str(user_id), item_id=str(item_id), model=model,
                                                       sampling=_sampling(temperature, top_k, top_p, max_tokens, seed))
        call = self._generation.GenerateReason(request, timeout=timeout)
        try:
            for message in call:
                if message.text:
                    yield message.text
        except grpc.RpcError as error:
            raise CurecError.from_rpc_error(error, "/curec.v1.GenerationService/GenerateReason") from None
        finally:
            call.cancel()

    # ------------------------------------------------------------ generation

    def generate_stream(
        self,
        messages: Optional[Iterable[MessageLike]] = None,
        *,
        prompt: Optional[str] = None,
        model: str = "",
        version: str = "",
        stop: Union[str, Iterable[str]] = (),
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        max_tokens: int = 0,
        seed: int = 0,
        repetition_penalty: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> GenerationStream:
        """Starts generating text and returns the stream: iterate it for the text pieces as
        they arrive; its ``result`` is the :class:`Generation` once it has ended. Takes the
        same arguments as :meth:`generate`.

        Example::

            with client.generate_stream([("user", "Recommend a film for a rainy day.")], max_tokens=80) as stream:
                for piece in stream:
                    print(piece, end="", flush=True)
            print("\n[%s]" % stream.result.finish_reason.name.lower())
        """
        if (messages is None) == (prompt is None):
            raise TypeError("give either messages (a conversation) or prompt= (raw text), not %s"
                            % ("both" if prompt is not None else "neither"))
        request = generation_pb2.GenerateRequest(
            model=model, version=version, stop=[stop] if isinstance(stop, str) else list(stop),
            sampling=_sampling(temperature, top_k, top_p, max_tokens, seed, repetition_penalty),
        )
        if prompt is not None:
            request.prompt = prompt
        else:
            request.chat.CopyFrom(_conversation(messages))  # type: ignore[arg-type]
        return GenerationStream(self._generation.Generate(request, timeout=timeout))

    def generate(
        self,
        messages: Optional[Iterable[MessageLike]] = None,
        *,
        prompt: Optional[str] = None,
        model: str = "",
        version: str = "",
        stop: Union[str, Iterable[str]] = (),
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        max_tokens: int = 0,
        seed: int = 0,
        repetition_penalty: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> Generation:
        """Generates text with a served language model and returns it whole.

        Example::

            answer = client.generate([("system", "You recommend films."), ("user", "Something like Heat?")],
                                     max_tokens=64, temperature=0.7, seed=1)
            print(answer.text, answer.finish_reason.name, answer.completion_tokens)

        Args:
            messages: the conversation; the model writes the next assistant turn. Each
                message is a ``(role, content)`` pair, a ``{"role": ..., "content": ...}``
                dict or a :class:`ChatMessage`; roles are ``"system"``, ``"user"`` and
                ``"assistant"``.
            prompt: raw prompt text instead of ``messages``, tokenized as given (special
                tokens such as ``<|im_start|>`` are recognised).
            model: the model name; empty means ``"smollm2"``, the pretrained base. A
                ``finetune`` job publishes others (its ``output`` parameter).
            version: the model's version, e.g. ``"v2"``; empty means the newest.
            stop: up to 4 strings (1 to 64 bytes each) that end generation; the stop text
                is not returned. A single string is one stop string.
            temperature: 0 means greedy decoding; the daemon's default is 0.8.
            top_k: 0 disables; default 40.
            top_p: 1 disables; default 0.95.
            max_tokens: 1 to 512; 0 means the daemon's default (192, or less when the
                model's context is small).
            seed: the sampling seed; the same request and seed give the same text.
            repetition_penalty: 1 to 2; 1 (the default) disables.
            timeout: seconds the whole generation may take (default: no deadline).

        Raises:
            CurecError: NOT_FOUND for an unknown model or version; INVALID_ARGUMENT for bad
                sampling options, an empty input or a prompt longer than the model's context.
            TypeError: for neither or both of ``messages`` and ``prompt``, or a malformed message.
            ValueError: for an unknown role.
        """
        return self.generate_stream(
            messages, prompt=prompt, model=model, version=version, stop=stop, temperature=temperature,
            top_k=top_k, top_p=top_p, max_tokens=max_tokens, seed=seed, repetition_penalty=repetition_penalty,
            timeout=timeout,
        ).finish()

    def wait_job(
        self,
        job_id: str,
        timeout: Optional[float] = None,
        on_event: Optional[Callable[[JobEvent], None]] = None,
    ) -> Job:
        """Watches the job until it ends and returns its final state.

        Args:
            timeout: seconds to wait at most; CurecError(DEADLINE_EXCEEDED) after that.
            on_event: called with every event, e.g. to print progress or log lines.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            ended = False
            try:
                for event in self.watch(job_id, timeout=remaining):
                    if on_event is not None:
                        on_event(event)
                    if event.final:
                        ended = True
                        break
            except CurecError as error:
                # A dropped connection (e.g. a daemon restart) resumes watching; the job
                # itself survives restarts.
                if error.code != grpc.StatusCode.UNAVAILABLE or (deadline is not None and time.monotonic() >= deadline):
                    raise
                time.sleep(0.5)
                continue
            job = self.get_job(job_id)
            if ended or job.finished:
                return job

    # ------------------------------------------------------------ models

    def models(self, name: str = "", *, timeout: Optional[float] = _UNSET) -> List[Model]:
        """Trained models in the artifact store and their versions.

        Args:
            name: only this model; NOT_FOUND if there is no model of that name.
        """
        response = self._call("ModelService", "List", model_pb2.ListModelsRequest(name=name), timeout)
        return [Model.from_proto(model) for model in response.models]

    def report(self, name: str = "", version: str = "", *, timeout: Optional[float] = _UNSET) -> Report:
        """A report artifact: the pipeline's (``"report"``) by default, newest version unless
        ``version`` (e.g. ``"v2"``) is given.

        Raises:
            CurecError: NOT_FOUND when no such report exists yet.
        """
        request = model_pb2.GetReportRequest(name=name, version=version)
        return Report.from_proto(self._call("ModelService", "GetReport", request, timeout))

    # ------------------------------------------------------------ datasets

    def upload_dataset(
        self,
        name: str,
        source: DatasetSource,
        *,
        chunk_size: int = DATASET_CHUNK_BYTES,
        timeout: Optional[float] = _UNSET,
    ) -> Dataset:
        """Uploads a chat dataset for fine-tuning as a new version of ``name``.

        The data is JSON Lines, one example a line: ``{"messages": [{"role": "system" |
        "user" | "assistant", "content": "..."}, ...]}`` with 2 to 64 turns, at least one user
        turn, and an assistant turn last (the one the model learns to write). It is streamed
        in chunks of ``chunk_size`` bytes, so a large file is never held in memory.

        Example::

            client.upload_dataset("support", "support.jsonl")
            client.upload_dataset("support", [[("user", "Hi!"), ("assistant", "Hello, how can I help?")]])

        Args:
            name: the dataset name: letters, digits, ``-``, ``_`` and ``.``, 1 to 64
                characters, starting with a letter or digit.
            source: a path to a JSON Lines file; the file's ``bytes``; a binary file object
                (read from where it is, not closed); or an iterable of examples, each a
                ``{"messages": [...]}`` mapping or a list of messages (``(role, content)``
                pairs, dicts or :class:`ChatMessage`), written one per line.
            chunk_size: bytes per upload message, 1 to 1 MiB.
            timeout: seconds the whole upload may take (default: the client's timeout).

        Returns:
            the stored version, e.g. ``Dataset(name="support", version="v2", examples=120, ...)``.

        Raises:
            CurecError: INVALID_ARGUMENT naming the first bad line (``"line 3: ..."``) or a bad
                name; RESOURCE_EXHAUSTED past the daemon's upload size limit. Nothing is
                stored unless the whole upload is valid.
            OSError: the file cannot be opened or read (then nothing is stored either).
        """
        if not 1 <= chunk_size <= _MAX_CHUNK_BYTES:
            raise ValueError("chunk_size must be 1 to %d bytes, not %d" % (_MAX_CHUNK_BYTES, chunk_size))
        if isinstance(source, (str, os.PathLike)):
            # Opened here, so a missing file fails before the call; closed when it ends.
            with open(source, "rb") as handle:
                return self.upload_dataset(name, handle, chunk_size=chunk_size, timeout=timeout)
        chunks = _dataset_chunks(source, chunk_size)
        failures: List[BaseException] = []

        def requests() -> Iterator[Any]:
            yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(name=name))
            try:
                for chunk in chunks:
                    yield dataset_pb2.UploadDatasetRequest(chunk=chunk)
            except Exception as error:  # reported to the caller below; grpcio only logs it
                failures.append(error)
                raise

        seconds = self.timeout if timeout is _UNSET else timeout
        try:
            response = self._datasets.Upload(requests(), timeout=seconds)
        except grpc.RpcError as error:
            if failures:
                raise failures[0] from None
            raise CurecError.from_rpc_error(error, "/curec.v1.DatasetService/Upload") from None
        return Dataset.from_proto(response)

    def datasets(self, name: str = "", *, timeout: Optional[float] = _UNSET) -> List[Dataset]:
        """Uploaded dataset versions, grouped by name, oldest first.

        Args:
            name: only this dataset's versions; NOT_FOUND if nothing was uploaded under it.
        """
        response = self._call("DatasetService", "List", dataset_pb2.ListDatasetsRequest(name=name), timeout)
        return [Dataset.from_proto(d) for d in response.datasets]

    def __getstate__(self) -> Dict[str, Any]:
        raise TypeError("a Client holds a live channel and cannot be pickled; pass the address instead")
