"""A typed client for the CURec serve daemon (``curecd``).

Wraps the gRPC stubs of ``Protos/curec/v1`` (recommend, reward, plugin, job and model
services): arguments are plain Python values, answers are the dataclasses of
:mod:`curec_client.types`, and every failed call raises :class:`curec_client.CurecError`.
"""

from __future__ import annotations

import json
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
from .types import (
    Job,
    JobEvent,
    JobState,
    Model,
    PluginList,
    PluginStatus,
    Recommendations,
    Report,
    RewardTriple,
    Rewards,
    Scores,
)

__all__ = ["Client", "DEFAULT_ADDRESS", "DEFAULT_TIMEOUT"]

#: Where ``scripts/run`` serves by default.
DEFAULT_ADDRESS = "127.0.0.1:50051"
#: Seconds a unary call may take unless the client or the call says otherwise.
DEFAULT_TIMEOUT = 30.0

#: A plugin config: raw bytes (e.g. a serialized protobuf for the C popularity plugin),
#: text, or a mapping that is sent as JSON (the bundled Swift plugins).
PluginConfig = Union[bytes, str, Mapping[str, Any]]
#: A reward triple as a dataclass or as a ``(user_id, item_id, reason_embedding)`` tuple.
TripleLike = Union[RewardTriple, Tuple[str, str, Sequence[float]]]

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


class Client:
    """A connection to one ``curecd``.

    Example::

        with Client("127.0.0.1:50051") as client:
            for item in client.recommend("196", k=5):
                print(item.item_id, item.title, round(item.score, 3))

    Args:
        address: ``host:port`` of the daemon (plaintext HTTP/2).
        timeout: seconds each unary call may take (None: no deadline). ``watch`` streams
            have no deadline unless one is passed to it.
        options: extra grpcio channel options, e.g. ``[("grpc.max_receive_message_length", n)]``.
        channel: an existing ``grpc.Channel`` to use instead of opening one; the client
            then does not close it.

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
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._owns_channel = channel is None
        self._channel: grpc.Channel = channel if channel is not None else grpc.insecure_channel(
            address, options=list(options or ())
        )
        self._jobs = job_pb2_grpc.JobServiceStub(self._channel)
        self._generation = generation_pb2_grpc.GenerationServiceStub(self._channel)
        self._stubs: Dict[str, Any] = {
            "RecommendService": recommend_pb2_grpc.RecommendServiceStub(self._channel),
            "RewardService": reward_pb2_grpc.RewardServiceStub(self._channel),
            "PluginService": plugin_pb2_grpc.PluginServiceStub(self._channel),
            "JobService": self._jobs,
            "ModelService": model_pb2_grpc.ModelServiceStub(self._channel),
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
            reason_model: language model name for generated reasons; empty means ``"lm"``.
            reason_source: ``"auto"`` (the pipeline's corrected reason table when it exists,
                else generation), ``"table"`` (FAILED_PRECONDITION without a table) or
                ``"generate"`` (the language model writes each reason; slower,
                FAILED_PRECONDITION if no model has been trained).

        Raises:
            CurecError: NOT_FOUND for an unknown user or plugin, INVALID_ARGUMENT for a bad k.
        """
        sources = {"auto": recommend_pb2.REASON_SOURCE_AUTO, "table": recommend_pb2.REASON_SOURCE_TABLE,
                   "generate": recommend_pb2.REASON_SOURCE_GENERATE}
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
                (e.g. ``"libCURecBPR.so"``) or an absolute path.
            config: the plugin's configuration; a mapping is sent as JSON.
            train: train on the daemon's dataset now unless a saved artifact can be loaded.
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
            library: another library; empty re-reads the same file.
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
        """Jobs, newest first, optionally only those in ``state`` and/or of ``kind``.

        ``state`` may be a :class:`JobState` or its name (``"running"``).
        """
        request = job_pb2.ListJobsRequest(
            state="JOB_STATE_" + JobState.parse(state).name if state is not None else "JOB_STATE_UNSPECIFIED",
            kind=kind or "",
            limit=limit,
        )
        return [Job.from_proto(job) for job in self._call("JobService", "List", request, timeout).jobs]

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
        built-in language model (``model``, default ``"lm"``). Join the pieces for the text.

        Raises:
            CurecError: while iterating, e.g. FAILED_PRECONDITION when no model was trained,
                DEADLINE_EXCEEDED when ``timeout`` passes mid-generation.
        """
        sampling = generation_pb2.SamplingOptions(max_tokens=max_tokens, seed=seed)
        if temperature is not None:
            sampling.temperature = temperature
        if top_k is not None:
            sampling.top_k = top_k
        if top_p is not None:
            sampling.top_p = top_p
        request = generation_pb2.GenerateReasonRequest(user_id=str(user_id), item_id=str(item_id), model=model,
                                                       sampling=sampling)
        call = self._generation.GenerateReason(request, timeout=timeout)
        try:
            for message in call:
                if message.text:
                    yield message.text
        except grpc.RpcError as error:
            raise CurecError.from_rpc_error(error, "/curec.v1.GenerationService/GenerateReason") from None
        finally:
            call.cancel()

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

    def __getstate__(self) -> Dict[str, Any]:
        raise TypeError("a Client holds a live channel and cannot be pickled; pass the address instead")
