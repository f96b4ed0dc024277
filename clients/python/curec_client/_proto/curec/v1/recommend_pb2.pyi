from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReasonSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_SOURCE_AUTO: _ClassVar[ReasonSource]
    REASON_SOURCE_TABLE: _ClassVar[ReasonSource]
    REASON_SOURCE_GENERATE: _ClassVar[ReasonSource]
    REASON_SOURCE_PAIR: _ClassVar[ReasonSource]
REASON_SOURCE_AUTO: ReasonSource
REASON_SOURCE_TABLE: ReasonSource
REASON_SOURCE_GENERATE: ReasonSource
REASON_SOURCE_PAIR: ReasonSource

class ScoreRequest(_message.Message):
    __slots__ = ("user_id", "item_ids", "plugin")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    plugin: str
    def __init__(self, user_id: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., plugin: _Optional[str] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores", "served_by")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    served_by: str
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., served_by: _Optional[str] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "k", "exclude_seen", "plugin", "with_reasons", "reason_model", "reason_source")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    WITH_REASONS_FIELD_NUMBER: _ClassVar[int]
    REASON_MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_SOURCE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    exclude_seen: bool
    plugin: str
    with_reasons: bool
    reason_model: str
    reason_source: ReasonSource
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_seen: bool = ..., plugin: _Optional[str] = ..., with_reasons: bool = ..., reason_model: _Optional[str] = ..., reason_source: _Optional[_Union[ReasonSource, str]] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "title", "reason", "reason_source", "reason_reward")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_REWARD_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    reason: str
    reason_source: str
    reason_reward: float
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., reason: _Optional[str] = ..., reason_source: _Optional[str] = ..., reason_reward: _Optional[float] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "served_by", "reason_model_version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    served_by: str
    reason_model_version: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., served_by: _Optional[str] = ..., reason_model_version: _Optional[str] = ...) -> None: ...
