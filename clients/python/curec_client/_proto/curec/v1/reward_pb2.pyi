from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

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
