#!/usr/bin/env bash
# Create ./.venv with edgecodec installed (editable) on a fresh machine.
# The heavy dependencies (torch is several GB) live in one cached venv keyed by the hash of
# requirements.txt and the Python version, shared by every checkout and CI run on the machine;
# ./.venv reaches them through a .pth file, so a new clone sets up in seconds once the cache exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "edgecodec needs Python >= 3.11"'
key=$( (cat requirements.txt; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
case "${XDG_CACHE_HOME:-}" in  # the XDG base folder when it is an absolute path (as edgecodec's ONNX cache)
  /*) cache_base=$XDG_CACHE_HOME ;;
  *) cache_base=$HOME/.cache ;;
esac
cache_root=${EDGECODEC_CACHE:-$cache_base/edgecodec}
deps="$cache_root/deps-$key"
mkdir -p "$cache_root"
(
  flock 9
  if [ ! -f "$deps/.complete" ]; then
    echo "setup: installing dependencies into $deps (first time only, a few minutes)" >&2
    rm -rf "$deps"
    "$PYTHON" -m venv "$deps"
    "$deps/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
    touch "$deps/.complete"
  fi
) 9>"$cache_root/.lock-$key"

if [ ! -f .venv/.deps ] || [ "$(cat .venv/.deps)" != "$deps" ]; then
  rm -rf .venv
  "$PYTHON" -m venv .venv
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  dep_site=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$dep_site" > "$site/_edgecodec_deps.pth"
  echo "$deps" > .venv/.deps
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . >&2
