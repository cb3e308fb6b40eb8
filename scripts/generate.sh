#!/usr/bin/env bash
# Regenerates the Python code of the contracts into clients/ (messages, .pyi
# type stubs and gRPC stubs). Run through `make generate`; CI fails when the
# committed code differs from what this produces.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=clients
rm -f "$out"/wework/v1/*_pb2*.py "$out"/wework/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc \
  --proto_path=protos \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/wework/v1/*.proto

# ---- the Wechaty puppet-service stubs (third-party protocol; a separate step) ----
scripts/generate-puppet-service.sh
