#!/usr/bin/env bash
# Set up, then compress and decompress a Kodak image with the shipped default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
image=${1:-${EDGECODEC_DATA:-../shared/data}/kodak/kodim23.png}  # or the image given as argument
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
.venv/bin/edgecodec compress "$image" -o "$out/image.edc" --metrics
.venv/bin/edgecodec decompress "$out/image.edc" -o "$out/image.png"
.venv/bin/edgecodec info "$out/image.edc"
