#!/usr/bin/env bash
# Generates the Python stubs of the Wechaty puppet-service protocol (the `wechaty.Puppet` gRPC
# service) into servers/wework/server/providers/puppet_service/gen, from the .proto files that
# the pinned npm package `wechaty-grpc` publishes (Apache-2.0; see gen/README.md). Nothing is
# retyped: the tarball is fetched with `npm pack`, checked against its pinned integrity, and its
# protos are compiled after two mechanical edits:
#   - the grpc-gateway openapiv2 option blocks and their import are stripped (HTTP-gateway
#     documentation only; their .proto is not published on PyPI), and
#   - the generated modules import each other under our package path instead of a top-level
#     `wechaty` package, so they cannot collide with anything else on sys.path.
# Called by scripts/generate.sh (make generate); scripts/check-contracts.sh runs it with
# --check, which regenerates into a temporary folder and diffs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WECHATY_GRPC_VERSION=1.5.2
WECHATY_GRPC_INTEGRITY="sha512-oOXU62oDf8/LIg8wAqSoZogZ+NFSGIAJvYuTewR6x5Ia4iWjbfrlwy7NHjWGBLkKM2EpnxgOAjyxhAb1iMxTJg=="
PKG=wework.server.providers.puppet_service.gen
target=servers/wework/server/providers/puppet_service/gen
cache=.cache/puppet-service/wechaty-grpc-$WECHATY_GRPC_VERSION

check=0
if [ "${1:-}" = "--check" ]; then check=1; fi

if [ ! -f "$cache/package/LICENSE" ]; then
  command -v npm >/dev/null || { echo "error: npm is needed to fetch wechaty-grpc $WECHATY_GRPC_VERSION" >&2; exit 1; }
  rm -rf "$cache" && mkdir -p "$cache"
  (cd "$cache" && npm pack --silent "wechaty-grpc@$WECHATY_GRPC_VERSION" >/dev/null)
  tgz="$cache/wechaty-grpc-$WECHATY_GRPC_VERSION.tgz"
  got="sha512-$("$PY" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tgz")"
  if [ "$got" != "$WECHATY_GRPC_INTEGRITY" ]; then
    echo "error: wechaty-grpc-$WECHATY_GRPC_VERSION.tgz integrity $got != pinned $WECHATY_GRPC_INTEGRITY" >&2
    rm -rf "$cache"; exit 1
  fi
  tar -xzf "$tgz" -C "$cache" package/LICENSE package/package.json package/dist/cjs/proto
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$cache/package/dist/cjs/proto" "$work/proto"
"$PY" - "$work/proto" <<'PYEOF'
import pathlib, re, sys
# Strip `option (grpc.gateway.protoc_gen_openapiv2.options.*) = { ... };` (braces balanced) and
# the import of their definitions; nothing else is touched.
for path in pathlib.Path(sys.argv[1]).rglob("*.proto"):
    text = path.read_text()
    text = text.replace('import "protoc-gen-openapiv2/options/annotations.proto";\n', "")
    out, i = [], 0
    pattern = re.compile(r"option\s*\(grpc\.gateway\.protoc_gen_openapiv2\.options\.\w+\)\s*=\s*\{")
    while (m := pattern.search(text, i)):
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j + 1 if text[j] == ";" else j
    out.append(text[i:])
    path.write_text("".join(out))
PYEOF

gen="$work/gen"
mkdir -p "$gen"
googleapis=$("$PY" -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')
grpc_include=$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
(cd "$work/proto" && find wechaty -name '*.proto' | sort) > "$work/files"
"$PY" -m grpc_tools.protoc --proto_path="$work/proto" --proto_path="$googleapis" --proto_path="$grpc_include" \
  --python_out="$gen" --pyi_out="$gen" --grpc_python_out="$gen" $(sed "s|^|$work/proto/|" "$work/files")
# Imports under our package path (e.g. `from wechaty.puppet import base_pb2`).
find "$gen" -name '*.py' -o -name '*.pyi' | xargs sed -i -E \
  -e "s/^from wechaty(\.| import)/from $PKG.wechaty\1/" -e "s/^import wechaty\./import $PKG.wechaty./"
for d in $(cd "$gen" && find . -type d); do touch "$gen/$d/__init__.py"; done
cp "$cache/package/LICENSE" "$gen/LICENSE"
cat > "$gen/README.md" <<MD
# Generated: the Wechaty puppet-service protocol

Python stubs of the \`.proto\` files published in the npm package \`wechaty-grpc\`
$WECHATY_GRPC_VERSION (https://github.com/wechaty/grpc, Apache-2.0: see LICENSE here),
made by \`scripts/generate-puppet-service.sh\` (\`make generate\`). Do not edit: the only changes
to the published protos are mechanical (the grpc-gateway openapiv2 option blocks are stripped,
and the modules import each other under \`$PKG\`).
MD

if [ $check = 1 ]; then
  if ! diff -r -x __pycache__ "$gen" "$target" >/dev/null 2>&1; then
    diff -r -x __pycache__ "$gen" "$target" | head -20 || true
    echo "error: $target is out of date; run 'make generate' and commit the result" >&2
    exit 1
  fi
  echo "puppet-service stubs: up to date"
else
  rm -rf "$target"
  cp -r "$gen" "$target"
fi
