"""ModelService through the typed client (a daemon that answers UNIMPLEMENTED fails them)."""

from __future__ import annotations

import grpc
import pytest

from curec_client import Client, CurecError, Model


def test_models_lists_the_trained_default_plugins(models_service: Client) -> None:
    models = {m.name: m for m in models_service.models()}
    assert {"bpr", "popularity", "reward"} <= set(models)
    bpr = models["bpr"]
    assert isinstance(bpr, Model) and bpr.versions
    latest = bpr.latest
    assert latest is not None and latest.version.startswith("v")
    assert latest.metadata.get("plugin") == "bpr"
    assert latest.metadata.get("dataset") == "ml-100k"


def test_models_filters_by_name(models_service: Client) -> None:
    only = models_service.models("popularity")
    assert [m.name for m in only] == ["popularity"]
    with pytest.raises(CurecError) as failure:
        models_service.models("no-such-model")
    assert failure.value.code == grpc.StatusCode.NOT_FOUND
