"""Generated protobuf and gRPC stubs of Protos/curec/v1 (scripts/generate-protos.d/clients.sh)."""
