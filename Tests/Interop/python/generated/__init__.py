"""Generated protobuf stubs for the interop tests (see scripts/generate-protos.d/python.sh)."""
