from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingOptions(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "max_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    max_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., max_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateReasonRequest(_message.Message):
    __slots__ = ("user_id", "item_id", "sampling", "model")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    sampling: SamplingOptions
    model: str
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., sampling: _Optional[_Union[SamplingOptions, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class GenerateReasonResponse(_message.Message):
    __slots__ = ("text", "token_id", "final", "finish_reason", "full_text", "reason", "model_version", "raw_reason")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    FULL_TEXT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RAW_REASON_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_id: int
    final: bool
    finish_reason: str
    full_text: str
    reason: str
    model_version: str
    raw_reason: str
    def __init__(self, text: _Optional[str] = ..., token_id: _Optional[int] = ..., final: _Optional[bool] = ..., finish_reason: _Optional[str] = ..., full_text: _Optional[str] = ..., reason: _Optional[str] = ..., model_version: _Optional[str] = ..., raw_reason: _Optional[str] = ...) -> None: ...
