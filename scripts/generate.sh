#!/usr/bin/env bash
# Regenerates everything made from the protos: the Python code of the contracts in
# clients/wework/v1 (messages, .pyi type stubs, gRPC stubs), the client facade's generated
# parts (clients/wework/client/_async/services.py, clients/wework/client/_sync/) and the
# method table of docs/client.md (scripts/generate_client.py).
#   scripts/generate.sh          writes them (`make generate`)
#   scripts/generate.sh --check  fails when the committed files differ (`make contracts`)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mode=${1:-write}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/clients"
"$PY" -m grpc_tools.protoc \
  --proto_path=protos \
  --python_out="$tmp/clients" --pyi_out="$tmp/clients" --grpc_python_out="$tmp/clients" \
  --include_source_info --include_imports --descriptor_set_out="$tmp/wework.binpb" \
  protos/wework/v1/*.proto
"$PY" scripts/generate_client.py "$tmp/wework.binpb" "$tmp"

client=clients/wework/client
generated=("$client/_async/services.py" "$client/_sync/core.py" "$client/_sync/services.py" docs/client.md)

if [ "$mode" = "--check" ]; then
  status=0
  if ! diff -r -x py.typed -x __pycache__ "$tmp/clients/wework/v1" clients/wework/v1 >/dev/null; then
    diff -r -x py.typed -x __pycache__ "$tmp/clients/wework/v1" clients/wework/v1 | head -20 || true
    status=1
  fi
  for file in "${generated[@]}"; do
    if ! diff -u "$file" "$tmp/$file" >/dev/null 2>&1; then
      diff -u "$file" "$tmp/$file" | head -20 || true
      status=1
    fi
  done
  if [ "$status" -ne 0 ]; then
    echo "error: generated code is out of date; run 'make generate' and commit the result" >&2
    exit 1
  fi
  echo "generated code: up to date"
  exit 0
fi

rm -f clients/wework/v1/*_pb2*.py clients/wework/v1/*_pb2*.pyi
cp "$tmp"/clients/wework/v1/*_pb2* clients/wework/v1/
for file in "${generated[@]}"; do
  cp "$tmp/$file" "$file"
done

# ---- the Wechaty puppet-service stubs (third-party protocol; a separate step) ----
scripts/generate-puppet-service.sh
