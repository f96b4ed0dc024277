"""Plain data types returned by :class:`curec_client.Client`.

Every type is an immutable dataclass built from the protobuf message the daemon sent, so
callers never handle generated protobuf classes. ``from_proto`` constructors are public for
code that talks to the stubs in ``curec_client._proto`` directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ._proto.curec.v1 import generation_pb2, job_pb2, plugin_pb2

__all__ = [
    "RecommendedItem",
    "Recommendations",
    "Scores",
    "RewardTriple",
    "Rewards",
    "PluginKind",
    "PluginStatus",
    "PluginList",
    "JobState",
    "Job",
    "JobEvent",
    "ModelVersion",
    "Model",
    "ChatRole",
    "ChatMessage",
    "FinishReason",
    "Generation",
    "Dataset",
]


# ---------------------------------------------------------------- recommendation


@dataclass(frozen=True)
class RecommendedItem:
    """One recommended item: the dataset's item id, its score (higher is better), title, and
    a reason when one was asked for (empty otherwise): from the corrected reason table
    (``reason_source == "table"``, with its reward), generated (``"generated"``), or a pair
    reason for this user and item (``"pair"``)."""

    item_id: str
    score: float
    title: str
    reason: str = ""
    reason_source: str = ""
    reason_reward: float = 0.0

    @classmethod
    def from_proto(cls, message: Any) -> "RecommendedItem":
        return cls(item_id=message.item_id, score=message.score, title=message.title, reason=message.reason,
                   reason_source=message.reason_source, reason_reward=message.reason_reward)


@dataclass(frozen=True)
class Recommendations:
    """The answer of ``Recommend``: the best items first, and who served them.

    Iterating yields the items; ``len()`` is their number.
    """

    items: Tuple[RecommendedItem, ...]
    #: The plugin instance that answered, as ``"name@version#generation"``.
    served_by: str
    #: The model that wrote pair reasons (``"smollm2"`` or ``"models/<name>/vN"``); empty otherwise.
    reason_model_version: str = ""

    def __iter__(self) -> Iterator[RecommendedItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def item_ids(self) -> List[str]:
        """The recommended item ids, best first."""
        return [item.item_id for item in self.items]

    @classmethod
    def from_proto(cls, message: Any) -> "Recommendations":
        return cls(
            items=tuple(RecommendedItem.from_proto(item) for item in message.items),
            served_by=message.served_by,
            reason_model_version=message.reason_model_version,
        )


@dataclass(frozen=True)
class Scores:
    """The answer of ``Score``: one score per requested item, in request order."""

    item_ids: Tuple[str, ...]
    scores: Tuple[float, ...]
    served_by: str

    def __iter__(self) -> Iterator[float]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def as_dict(self) -> Dict[str, float]:
        """Scores keyed by item id."""
        return dict(zip(self.item_ids, self.scores))

    def ranked(self) -> List[Tuple[str, float]]:
        """``(item_id, score)`` pairs, best first."""
        return sorted(zip(self.item_ids, self.scores), key=lambda pair: pair[1], reverse=True)


# ---------------------------------------------------------------- reward


@dataclass(frozen=True)
class RewardTriple:
    """A recommendation reason about (user, item), given as its sentence embedding."""

    user_id: str
    item_id: str
    reason_embedding: Sequence[float]


@dataclass(frozen=True)
class Rewards:
    """The answer of ``RewardService.Score``: one reward per triple, in request order."""

    rewards: Tuple[float, ...]
    served_by: str

    def __iter__(self) -> Iterator[float]:
        return iter(self.rewards)

    def __len__(self) -> int:
        return len(self.rewards)


# ---------------------------------------------------------------- plugins


class PluginKind(enum.IntEnum):
    """What a plugin instance does (``curec.v1.PluginKind``)."""

    UNSPECIFIED = plugin_pb2.PLUGIN_KIND_UNSPECIFIED
    RECOMMENDER = plugin_pb2.PLUGIN_KIND_RECOMMENDER
    REWARD_MODEL = plugin_pb2.PLUGIN_KIND_REWARD_MODEL

    @classmethod
    def _missing_(cls, value: object) -> "PluginKind":
        return cls.UNSPECIFIED


@dataclass(frozen=True)
class PluginStatus:
    """A loaded plugin instance."""

    #: Instance name, unique in the daemon (e.g. ``"bpr"``).
    name: str
    #: The plugin's own name and version.
    plugin_name: str
    plugin_version: str
    kind: PluginKind
    #: The shared library it was loaded from.
    library: str
    trained: bool
    #: Increases by one on every reload of this instance name.
    generation: int
    item_feature_dim: int
    reason_embedding_dim: int
    #: The ``train`` job that trained it when loading had to train (else empty).
    job_id: str = ""

    @classmethod
    def from_proto(cls, message: Any) -> "PluginStatus":
        return cls(
            name=message.name,
            plugin_name=message.plugin_name,
            plugin_version=message.plugin_version,
            kind=PluginKind(message.kind),
            library=message.library,
            trained=message.trained,
            generation=message.generation,
            item_feature_dim=message.item_feature_dim,
            reason_embedding_dim=message.reason_embedding_dim,
            job_id=message.job_id,
        )


@dataclass(frozen=True)
class PluginList:
    """The answer of ``PluginService.List``. Iterating yields the plugin instances."""

    plugins: Tuple[PluginStatus, ...]
    #: Shared libraries in the plugin directories that export the CURec ABI.
    available_libraries: Tuple[str, ...]

    def __iter__(self) -> Iterator[PluginStatus]:
        return iter(self.plugins)

    def __len__(self) -> int:
        return len(self.plugins)

    def __contains__(self, name: object) -> bool:
        return any(plugin.name == name for plugin in self.plugins)

    def get(self, name: str) -> Optional[PluginStatus]:
        """The instance called ``name``, or None."""
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        return None

    @classmethod
    def from_proto(cls, message: Any) -> "PluginList":
        return cls(
            plugins=tuple(PluginStatus.from_proto(p) for p in message.plugins),
            available_libraries=tuple(message.available_libraries),
        )


# ---------------------------------------------------------------- jobs


class JobState(enum.IntEnum):
    """The life cycle of a job (``curec.v1.JobState``)."""

    UNSPECIFIED = job_pb2.JOB_STATE_UNSPECIFIED
    QUEUED = job_pb2.JOB_STATE_QUEUED
    RUNNING = job_pb2.JOB_STATE_RUNNING
    SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
    FAILED = job_pb2.JOB_STATE_FAILED
    CANCELLED = job_pb2.JOB_STATE_CANCELLED

    @classmethod
    def _missing_(cls, value: object) -> "JobState":
        return cls.UNSPECIFIED

    @property
    def finished(self) -> bool:
        """True for the states a job never leaves (succeeded, failed, cancelled)."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def parse(cls, value: "JobState | str | int") -> "JobState":
        """Accepts a JobState, its number, or a name such as ``"running"``/``"JOB_STATE_RUNNING"``."""
        if isinstance(value, JobState):
            return value
        if isinstance(value, int):
            return cls(value)
        name = str(value).strip().upper()
        if name.startswith("JOB_STATE_"):
            name = name[len("JOB_STATE_"):]
        try:
            return cls[name]
        except KeyError:
            raise ValueError("unknown job state %r" % (value,)) from None


def _ms(value: int) -> Optional[int]:
    return value or None


@dataclass(frozen=True)
class Job:
    """A job as the daemon last reported it.

    Times are Unix milliseconds, or None when the job has not reached that point yet.
    """

    id: str
    kind: str
    parameters: Mapping[str, str]
    state: JobState
    #: The current stage (e.g. ``"train"``), step and total within it.
    stage: str
    step: int
    total: int
    metrics: Mapping[str, float]
    #: Why the job failed, if it did.
    error: str
    created_unix_ms: Optional[int]
    started_unix_ms: Optional[int]
    finished_unix_ms: Optional[int]
    #: How many times it was started (more than 1 after a restart resumed it).
    attempts: int
    #: The artifact version the job produced, e.g. ``"models/bpr/v3"``.
    artifact: str

    @property
    def finished(self) -> bool:
        """True once the job has succeeded, failed or been cancelled."""
        return self.state.finished

    @property
    def progress(self) -> Optional[float]:
        """``step / total`` within the current stage, or None when the total is unknown."""
        return self.step / self.total if self.total else None

    @classmethod
    def from_proto(cls, message: Any) -> "Job":
        return cls(
            id=message.id,
            kind=message.kind,
            parameters=dict(message.parameters),
            state=JobState(message.state),
            stage=message.stage,
            step=message.step,
            total=message.total,
            metrics=dict(message.metrics),
            error=message.error,
            created_unix_ms=_ms(message.created_unix_ms),
            started_unix_ms=_ms(message.started_unix_ms),
            finished_unix_ms=_ms(message.finished_unix_ms),
            attempts=message.attempts,
            artifact=message.artifact,
        )


@dataclass(frozen=True)
class JobEvent:
    """One step of a job's progress, as streamed by ``JobService.Watch``."""

    job_id: str
    state: JobState
    stage: str
    step: int
    total: int
    metrics: Mapping[str, float]
    #: A log line, when the event carries one (else empty).
    log_line: str
    time_unix_ms: Optional[int]
    #: Set on the last event of the stream: the job has ended.
    final: bool
    error: str

    @classmethod
    def from_proto(cls, message: Any) -> "JobEvent":
        return cls(
            job_id=message.job_id,
            state=JobState(message.state),
            stage=message.stage,
            step=message.step,
            total=message.total,
            metrics=dict(message.metrics),
            log_line=message.log_line,
            time_unix_ms=_ms(message.time_unix_ms),
            final=message.final,
            error=message.error,
        )


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelVersion:
    """One immutable trained version of a model, e.g. ``v3``, and its metadata.json."""

    version: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: Any) -> "ModelVersion":
        return cls(version=message.version, metadata=dict(message.metadata))


@dataclass(frozen=True)
class Model:
    """A model name in the artifact store and its versions."""

    name: str
    versions: Tuple[ModelVersion, ...]

    @property
    def latest(self) -> Optional[ModelVersion]:
        """The version with the highest number (``vN``), or None when there is none."""

        def number(v: ModelVersion) -> Tuple[int, str]:
            digits = v.version.lstrip("v")
            return (int(digits) if digits.isdigit() else -1, v.version)

        return max(self.versions, key=number) if self.versions else None

    @classmethod
    def from_proto(cls, message: Any) -> "Model":
        return cls(
            name=message.name,
            versions=tuple(ModelVersion.from_proto(v) for v in message.versions),
        )


@dataclass(frozen=True)
class Report:
    """A report artifact (the pipeline's by default): its Markdown and every file beside it."""

    name: str
    version: str
    markdown: str
    #: File name -> bytes (report.md, the SVG charts, results.json, stages.json).
    files: Mapping[str, bytes] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)

    def save(self, directory: str) -> List[str]:
        """Writes every file into ``directory`` (created if needed); returns the paths."""
        import os

        os.makedirs(directory, exist_ok=True)
        paths = []
        for name, content in self.files.items():
            path = os.path.join(directory, os.path.basename(name))
            with open(path, "wb") as handle:
                handle.write(content)
            paths.append(path)
        return paths

    @classmethod
    def from_proto(cls, message: Any) -> "Report":
        return cls(name=message.name, version=message.version, markdown=message.markdown,
                   files={f.name: bytes(f.content) for f in message.files}, metadata=dict(message.metadata))


# ---------------------------------------------------------------- generation


class ChatRole(enum.IntEnum):
    """Who wrote a turn of a conversation (``curec.v1.ChatRole``)."""

    UNSPECIFIED = generation_pb2.CHAT_ROLE_UNSPECIFIED
    SYSTEM = generation_pb2.CHAT_ROLE_SYSTEM
    USER = generation_pb2.CHAT_ROLE_USER
    ASSISTANT = generation_pb2.CHAT_ROLE_ASSISTANT

    @classmethod
    def _missing_(cls, value: object) -> "ChatRole":
        return cls.UNSPECIFIED

    @classmethod
    def parse(cls, value: "ChatRole | str | int") -> "ChatRole":
        """Accepts a ChatRole, its number, or a name such as ``"user"``/``"CHAT_ROLE_USER"``.

        Raises:
            ValueError: for anything but system, user or assistant.
        """
        if isinstance(value, ChatRole):
            role = value
        elif isinstance(value, int) and not isinstance(value, bool):
            role = cls(value)
        elif isinstance(value, str):
            name = value.strip().upper()
            if name.startswith("CHAT_ROLE_"):
                name = name[len("CHAT_ROLE_"):]
            role = cls.__members__.get(name, cls.UNSPECIFIED)
        else:
            raise ValueError("a chat role must be 'system', 'user' or 'assistant', not %r" % (value,))
        if role is cls.UNSPECIFIED:
            raise ValueError("a chat role must be 'system', 'user' or 'assistant', not %r" % (value,))
        return role

    @property
    def wire_name(self) -> str:
        """The lower-case name used in dataset files: ``"system"``, ``"user"`` or ``"assistant"``."""
        return self.name.lower()


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation. ``Client.generate`` and ``Client.upload_dataset`` also
    accept ``(role, content)`` tuples and ``{"role": ..., "content": ...}`` dicts."""

    role: ChatRole
    content: str

    @classmethod
    def parse(cls, value: Any) -> "ChatMessage":
        """Accepts a ChatMessage, a ``(role, content)`` pair or a ``{"role", "content"}`` mapping.

        Raises:
            ValueError: for an unknown role; TypeError for anything else.
        """
        if isinstance(value, ChatMessage):
            return value
        if isinstance(value, Mapping):
            try:
                role, content = value["role"], value["content"]
            except KeyError:
                raise TypeError("a chat message mapping needs 'role' and 'content', got keys %s"
                                % sorted(value)) from None
        elif isinstance(value, (tuple, list)) and len(value) == 2:
            role, content = value
        else:
            raise TypeError("a chat message must be a (role, content) pair, a mapping with 'role' and "
                            "'content', or a ChatMessage, not %r" % (value,))
        if not isinstance(content, str):
            raise TypeError("chat message content must be a str, not %s" % type(content).__name__)
        return cls(role=ChatRole.parse(role), content=content)

    def to_proto(self) -> Any:
        return generation_pb2.ChatMessage(role=int(self.role), content=self.content)

    def to_json(self) -> Dict[str, str]:
        """The message as a dataset file writes it: ``{"role": "user", "content": "..."}``."""
        return {"role": self.role.wire_name, "content": self.content}


class FinishReason(enum.IntEnum):
    """Why generation ended (``curec.v1.FinishReason``)."""

    UNSPECIFIED = generation_pb2.FINISH_REASON_UNSPECIFIED
    #: The model ended its turn, or the text reached a stop string.
    STOP = generation_pb2.FINISH_REASON_STOP
    #: ``max_tokens`` tokens were generated.
    LENGTH = generation_pb2.FINISH_REASON_LENGTH
    #: The model's context is full.
    CONTEXT = generation_pb2.FINISH_REASON_CONTEXT

    @classmethod
    def _missing_(cls, value: object) -> "FinishReason":
        return cls.UNSPECIFIED


@dataclass(frozen=True)
class Generation:
    """The result of ``Client.generate``: the whole generated text (stop text excluded), why
    it ended, the token counts and the model version that wrote it (e.g. ``"smollm2"`` or
    ``"models/support-bot/v2"``). ``str()`` is the text."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    model_version: str

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_proto(cls, message: Any) -> "Generation":
        """Builds it from the last ``GenerateResponse`` of a stream (the one with ``final``)."""
        return cls(
            text=message.full_text,
            finish_reason=FinishReason(message.finish_reason),
            prompt_tokens=message.prompt_tokens,
            completion_tokens=message.completion_tokens,
            model_version=message.model_version,
        )


# ---------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Dataset:
    """One immutable version of an uploaded chat dataset (``datasets/<name>/<version>/``)."""

    name: str
    #: e.g. ``"v2"``; a ``finetune`` job takes ``dataset="name"`` (newest) or ``"name@v2"``.
    version: str
    #: How many examples (non-blank lines) it holds.
    examples: int
    #: The size of the uploaded JSON Lines file.
    bytes: int
    created_unix_ms: int

    @property
    def ref(self) -> str:
        """``"name@version"``, as a ``finetune`` job's ``dataset`` parameter takes it."""
        return "%s@%s" % (self.name, self.version)

    @classmethod
    def from_proto(cls, message: Any) -> "Dataset":
        return cls(name=message.name, version=message.version, examples=message.examples,
                   bytes=message.bytes, created_unix_ms=message.created_unix_ms)


@dataclass(frozen=True)
class VerifierFailure:
    """A verifier check a reason failed (e.g. ``"title-exists"``), what failed, the offending
    text and the check's penalty."""

    check: str
    detail: str
    text: str
    penalty: float

    @classmethod
    def from_proto(cls, message: Any) -> "VerifierFailure":
        return cls(check=message.check, detail=message.detail, text=message.text, penalty=message.penalty)


@dataclass(frozen=True)
class ReasonReward:
    """The pipeline's reward of a reason text for a (user, item) pair, with its parts:
    ``reward = collaborative - penalty`` (-1 for an empty text); ``collaborative`` is the mean
    of ``user_agreement`` and ``audience_agreement`` (each in [0, 1], 0.5 is chance)."""

    reward: float
    collaborative: float
    user_agreement: float
    audience_agreement: float
    penalty: float
    failures: Tuple[VerifierFailure, ...]
    checks_passed: bool

    @classmethod
    def from_proto(cls, message: Any) -> "ReasonReward":
        return cls(reward=message.reward, collaborative=message.collaborative, user_agreement=message.user_agreement,
                   audience_agreement=message.audience_agreement, penalty=message.penalty,
                   failures=tuple(VerifierFailure.from_proto(f) for f in message.failures),
                   checks_passed=message.checks_passed)


@dataclass(frozen=True)
class Embeddings:
    """MiniLM sentence embeddings, one unit-length vector per text, in request order."""

    vectors: Tuple[Tuple[float, ...], ...]
    dimension: int
    model: str

    def __iter__(self) -> Iterator[Tuple[float, ...]]:
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)
