#!/bin/bash
# Build .gpu/ (git-ignored through .git/info/exclude) for training on the GPU machine the device
# tool lends to some sessions: it has torch (2.11, Python 3.12, numpy 2) but no CompressAI and no
# network, and a call carries the working tree plus named ignored folders, 64 MiB in all.
#   .gpu/site  CompressAI 1.2.8's cp312 wheel unpacked (its extensions link no torch), pytorch-msssim,
#              torchsummary, stlpips-pytorch from this venv without its VGG weights, and a stand-in
#              IPython (stlpips-pytorch imports IPython.embed and never calls it);
#   .gpu/data  the training photos cut to MB megabytes (scripts/gpu/prepare_data.py).
# Then, in one device call carrying .gpu: `SECS=420 bash scripts/gpu/train.sh JOBS` (see there).
# If the tracked files and .gpu pass 64 MiB, move results/ and docs/ aside for the call.
# To continue a GCRB run with its discriminator, carry its checkpoint without optimizer states:
#   python scripts/gpu/strip_checkpoint.py /root/runs/RUN .gpu/init/RUN.pt   (18 MB: the codec and the 2.8 M-parameter PatchGAN)
# and start the job with train.init_from=.gpu/init/RUN.pt (bundle.sh rebuilds .gpu: do this after).
#   bash scripts/gpu/bundle.sh [MB]
set -euo pipefail
cd "$(dirname "$0")/../.."
MB=${1:-30}
# Checked before anything is changed (an argument such as --help was taken as the size)
[[ $MB =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "usage: bash scripts/gpu/bundle.sh [MB] (the training photos' size, default 30)" >&2; exit 2; }
PY=.venv/bin/python
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
rm -rf .gpu
mkdir -p .gpu/site .gpu/wheels
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/wheels compressai==1.2.8 pytorch-msssim==1.0.0 torchsummary==1.5.1
for wheel in .gpu/wheels/*.whl; do $PY -m zipfile -e "$wheel" .gpu/site; done
rm -rf .gpu/wheels
cp -r "$($PY -c 'import os, stlpips_pytorch; print(os.path.dirname(stlpips_pytorch.__file__))')" .gpu/site/
rm -f .gpu/site/stlpips_pytorch/weights/*/vgg_*.pth
find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
mkdir -p .gpu/site/IPython
printf 'def embed(*args, **kwargs):  # stand-in: stlpips-pytorch imports it and never calls it\n    raise RuntimeError("IPython stand-in")\n' \
  > .gpu/site/IPython/__init__.py
$PY scripts/gpu/prepare_data.py "$MB" ../shared/data/train .gpu/data
echo "tracked $(git ls-files -z | du -ch --apparent-size --files0-from=- | tail -1 | cut -f1), .gpu $(du -sh --apparent-size .gpu | cut -f1) (64 MiB a call)"
