from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardTriple(_message.Message):
    __slots__ = ("user_id", "item_id", "reason_embedding")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    reason_embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., reason_embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("triples", "plugin")
    TRIPLES_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    triples: _containers.RepeatedCompositeFieldContainer[RewardTriple]
    plugin: str
    def __init__(self, triples: _Optional[_Iterable[_Union[RewardTriple, _Mapping]]] = ..., plugin: _Optional[str] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("rewards", "served_by")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedScalarFieldContainer[float]
    served_by: str
    def __init__(self, rewards: _Optional[_Iterable[float]] = ..., served_by: _Optional[str] = ...) -> None: ...

class ReasonText(_message.Message):
    __slots__ = ("user_id", "item_id", "text")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    text: str
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ScoreReasonsRequest(_message.Message):
    __slots__ = ("reasons",)
    REASONS_FIELD_NUMBER: _ClassVar[int]
    reasons: _containers.RepeatedCompositeFieldContainer[ReasonText]
    def __init__(self, reasons: _Optional[_Iterable[_Union[ReasonText, _Mapping]]] = ...) -> None: ...

class VerifierFailure(_message.Message):
    __slots__ = ("check", "detail", "text", "penalty")
    CHECK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PENALTY_FIELD_NUMBER: _ClassVar[int]
    check: str
    detail: str
    text: str
    penalty: float
    def __init__(self, check: _Optional[str] = ..., detail: _Optional[str] = ..., text: _Optional[str] = ..., penalty: _Optional[float] = ...) -> None: ...

class ReasonReward(_message.Message):
    __slots__ = ("reward", "collaborative", "user_agreement", "audience_agreement", "penalty", "failures", "checks_passed")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    COLLABORATIVE_FIELD_NUMBER: _ClassVar[int]
    USER_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PENALTY_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CHECKS_PASSED_FIELD_NUMBER: _ClassVar[int]
    reward: float
    collaborative: float
    user_agreement: float
    audience_agreement: float
    penalty: float
    failures: _containers.RepeatedCompositeFieldContainer[VerifierFailure]
    checks_passed: bool
    def __init__(self, reward: _Optional[float] = ..., collaborative: _Optional[float] = ..., user_agreement: _Optional[float] = ..., audience_agreement: _Optional[float] = ..., penalty: _Optional[float] = ..., failures: _Optional[_Iterable[_Union[VerifierFailure, _Mapping]]] = ..., checks_passed: bool = ...) -> None: ...

class ScoreReasonsResponse(_message.Message):
    __slots__ = ("rewards",)
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[ReasonReward]
    def __init__(self, rewards: _Optional[_Iterable[_Union[ReasonReward, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "dimension", "model")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    dimension: int
    model: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., dimension: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...
