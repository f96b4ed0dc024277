from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PluginIsolation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_ISOLATION_UNSPECIFIED: _ClassVar[PluginIsolation]
    PLUGIN_ISOLATION_IN_PROCESS: _ClassVar[PluginIsolation]
    PLUGIN_ISOLATION_PROCESS: _ClassVar[PluginIsolation]

class PluginReadiness(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_READINESS_UNSPECIFIED: _ClassVar[PluginReadiness]
    PLUGIN_READINESS_SERVING: _ClassVar[PluginReadiness]
    PLUGIN_READINESS_RESTARTING: _ClassVar[PluginReadiness]
    PLUGIN_READINESS_FAILED: _ClassVar[PluginReadiness]

class PluginKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_KIND_UNSPECIFIED: _ClassVar[PluginKind]
    PLUGIN_KIND_RECOMMENDER: _ClassVar[PluginKind]
    PLUGIN_KIND_REWARD_MODEL: _ClassVar[PluginKind]
PLUGIN_ISOLATION_UNSPECIFIED: PluginIsolation
PLUGIN_ISOLATION_IN_PROCESS: PluginIsolation
PLUGIN_ISOLATION_PROCESS: PluginIsolation
PLUGIN_READINESS_UNSPECIFIED: PluginReadiness
PLUGIN_READINESS_SERVING: PluginReadiness
PLUGIN_READINESS_RESTARTING: PluginReadiness
PLUGIN_READINESS_FAILED: PluginReadiness
PLUGIN_KIND_UNSPECIFIED: PluginKind
PLUGIN_KIND_RECOMMENDER: PluginKind
PLUGIN_KIND_REWARD_MODEL: PluginKind

class PluginStatus(_message.Message):
    __slots__ = ("name", "plugin_name", "plugin_version", "kind", "library", "trained", "generation", "item_feature_dim", "reason_embedding_dim", "job_id", "isolation", "readiness", "readiness_reason", "max_batch_size", "dynamic_batching")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ITEM_FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    REASON_EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    READINESS_REASON_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_BATCHING_FIELD_NUMBER: _ClassVar[int]
    name: str
    plugin_name: str
    plugin_version: str
    kind: PluginKind
    library: str
    trained: bool
    generation: int
    item_feature_dim: int
    reason_embedding_dim: int
    job_id: str
    isolation: PluginIsolation
    readiness: PluginReadiness
    readiness_reason: str
    max_batch_size: int
    dynamic_batching: DynamicBatching
    def __init__(self, name: _Optional[str] = ..., plugin_name: _Optional[str] = ..., plugin_version: _Optional[str] = ..., kind: _Optional[_Union[PluginKind, str]] = ..., library: _Optional[str] = ..., trained: bool = ..., generation: _Optional[int] = ..., item_feature_dim: _Optional[int] = ..., reason_embedding_dim: _Optional[int] = ..., job_id: _Optional[str] = ..., isolation: _Optional[_Union[PluginIsolation, str]] = ..., readiness: _Optional[_Union[PluginReadiness, str]] = ..., readiness_reason: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., dynamic_batching: _Optional[_Union[DynamicBatching, _Mapping]] = ...) -> None: ...

class DynamicBatching(_message.Message):
    __slots__ = ("max_queue_delay_microseconds", "preferred_batch_size", "max_batch_size", "max_queue_size")
    MAX_QUEUE_DELAY_MICROSECONDS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    max_queue_delay_microseconds: int
    preferred_batch_size: _containers.RepeatedScalarFieldContainer[int]
    max_batch_size: int
    max_queue_size: int
    def __init__(self, max_queue_delay_microseconds: _Optional[int] = ..., preferred_batch_size: _Optional[_Iterable[int]] = ..., max_batch_size: _Optional[int] = ..., max_queue_size: _Optional[int] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins", "available_libraries")
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[PluginStatus]
    available_libraries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, plugins: _Optional[_Iterable[_Union[PluginStatus, _Mapping]]] = ..., available_libraries: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadPluginRequest(_message.Message):
    __slots__ = ("name", "library", "config", "train", "isolation", "call_time_limit_ms", "dynamic_batching")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    CALL_TIME_LIMIT_MS_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_BATCHING_FIELD_NUMBER: _ClassVar[int]
    name: str
    library: str
    config: bytes
    train: bool
    isolation: PluginIsolation
    call_time_limit_ms: int
    dynamic_batching: DynamicBatching
    def __init__(self, name: _Optional[str] = ..., library: _Optional[str] = ..., config: _Optional[bytes] = ..., train: bool = ..., isolation: _Optional[_Union[PluginIsolation, str]] = ..., call_time_limit_ms: _Optional[int] = ..., dynamic_batching: _Optional[_Union[DynamicBatching, _Mapping]] = ...) -> None: ...

class UnloadPluginRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadPluginResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPluginRequest(_message.Message):
    __slots__ = ("name", "library", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    library: str
    config: bytes
    def __init__(self, name: _Optional[str] = ..., library: _Optional[str] = ..., config: _Optional[bytes] = ...) -> None: ...
