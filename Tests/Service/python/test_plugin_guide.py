"""Follows docs/plugin-guide.md for C: install the SDK, build the example outside the
repository, load it into the running daemon, and get recommendations from it."""

import os
import shutil
import subprocess
import tempfile

from curec_client._proto.curec.v1 import plugin_pb2, plugin_pb2_grpc, recommend_pb2, recommend_pb2_grpc
from conftest import REPO_ROOT
from movielens import read_atomic
from conftest import dataset_dir


def test_c_plugin_from_the_guide_builds_loads_and_serves(daemon, channel):
    prefix = tempfile.mkdtemp(prefix="curec-sdk-")
    subprocess.run([os.path.join(REPO_ROOT, "scripts", "install-plugin-sdk"), prefix], check=True, capture_output=True)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    cflags = subprocess.run(["pkg-config", "--cflags", "curec-plugin"], env=env, check=True,
                            capture_output=True, text=True).stdout.split()
    # Built straight into the daemon's plugin directory, <data_dir>/plugins.
    work = os.path.join(daemon.data_dir, "plugins")
    os.makedirs(work, exist_ok=True)
    library = os.path.join(work, "librecency.so")
    source = os.path.join(REPO_ROOT, "docs", "examples", "plugins", "c-recency", "recency.c")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", *cflags, source, "-o", library], check=True)

    plugins = plugin_pb2_grpc.PluginServiceStub(channel)
    status = plugins.Load(plugin_pb2.LoadPluginRequest(name="recency", library="librecency.so", train=True), timeout=60)
    assert status.plugin_name == "recency" and status.trained
    assert status.job_id, "training ran as a train job"

    response = recommend_pb2_grpc.RecommendServiceStub(channel).Recommend(
        recommend_pb2.RecommendRequest(user_id="1", k=5, plugin="recency"), timeout=10)
    assert response.served_by.startswith("recency@0.1.0")
    # The example stores timestamps as float32, so compare at float32 precision.
    assert len(response.items) == 5
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)
    newest = max(float(row["timestamp"]) for row in read_atomic(os.path.join(dataset_dir(), "ml-100k.inter")))
    assert abs(scores[0] - newest) / newest < 1e-6, "the top item is not among the most recently consumed"
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="recency"), timeout=10)


def test_swift_plugin_from_the_guide_builds_loads_and_serves(daemon, channel):
    """The Swift example: one declaration names the plugin type, CURecPluginKit exports the
    C entry points; the daemon loads the built library and serves from it."""
    package = os.path.join(REPO_ROOT, "docs", "examples", "plugins", "swift-recency")
    subprocess.run(["swift", "build", "-c", "release", "--package-path", package], check=True, capture_output=True)
    bin_path = subprocess.run(["swift", "build", "-c", "release", "--package-path", package, "--show-bin-path"],
                              check=True, capture_output=True, text=True).stdout.strip()
    library = os.path.join(bin_path, "libRecency.so")
    installed = os.path.join(daemon.data_dir, "plugins")
    os.makedirs(installed, exist_ok=True)
    shutil.copy(library, installed)

    plugins = plugin_pb2_grpc.PluginServiceStub(channel)
    status = plugins.Load(plugin_pb2.LoadPluginRequest(name="recency-swift", library="libRecency.so", train=True), timeout=60)
    assert status.plugin_name == "recency-swift" and status.trained

    response = recommend_pb2_grpc.RecommendServiceStub(channel).Recommend(
        recommend_pb2.RecommendRequest(user_id="1", k=5, plugin="recency-swift"), timeout=10)
    assert response.served_by.startswith("recency-swift@0.1.0")
    scores = [item.score for item in response.items]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    newest = max(float(row["timestamp"]) for row in read_atomic(os.path.join(dataset_dir(), "ml-100k.inter")))
    assert abs(scores[0] - newest) / newest < 1e-6, "the top item is not among the most recently consumed"
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="recency-swift"), timeout=10)
