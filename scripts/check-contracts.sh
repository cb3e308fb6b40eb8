#!/usr/bin/env bash
# Contract checks: buf lint (STANDARD), buf format, the breaking-change check
# against the previous commit of main, and the committed generated code.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=.venv/bin/buf

"$BUF" lint
"$BUF" format --diff --exit-code

# Breaking changes: on main compare with the commit before HEAD, elsewhere with main.
branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo "")
if [ "$branch" = "main" ] || [ "$branch" = "HEAD" ]; then
  against=HEAD~1
else
  against=main
fi
if git rev-parse --verify --quiet "$against" >/dev/null && git cat-file -e "$against:buf.yaml" 2>/dev/null; then
  "$BUF" breaking --against ".git#ref=$against"
  echo "buf breaking: no breaking change against $against"
else
  echo "buf breaking: skipped ($against has no buf module yet)"
fi

# Generated code must be what scripts/generate.sh produces from the protos.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wework/v1"
.venv/bin/python -m grpc_tools.protoc --proto_path=protos \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" protos/wework/v1/*.proto
if ! diff -r -x py.typed -x __pycache__ "$tmp/wework/v1" clients/wework/v1 >/dev/null; then
  diff -r -x py.typed -x __pycache__ "$tmp/wework/v1" clients/wework/v1 | head -20 || true
  echo "error: clients/wework/v1 is out of date; run 'make generate' and commit the result" >&2
  exit 1
fi
echo "generated code: up to date"

# ---- the Wechaty puppet-service stubs (third-party, not linted by buf): up to date ----
scripts/generate-puppet-service.sh --check
