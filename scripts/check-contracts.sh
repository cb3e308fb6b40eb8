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

# Generated code (contracts, client facade, docs/client.md's method table) must be what
# scripts/generate.sh produces from the protos.
scripts/generate.sh --check

# The Wechaty puppet-service stubs (third-party, not linted by buf): up to date.
scripts/generate-puppet-service.sh --check
