#!/bin/bash
# On the lent GPU machine, in a device call carrying .gpu (scripts/gpu/bundle.sh): every line of
# JOBS is "NAME CONFIG-AND-OVERRIDES..." of an `edgecodec train` run; all run side by side (one
# process each: the crops are cut on the CPU in each process, so one process does not fill the GPU)
# on 16 x 256² crops of .gpu/data, each stopped by train.max_seconds=SECS. Each run's last
# checkpoint, without optimizer states (scripts/gpu/strip_checkpoint.py; a GCRB run's
# discriminator stays), is then packed with its logs into $OUT/NAME.tgz (8 files
# come back from a call: at most 7 jobs). Export here with `edgecodec export-model RUN`.
# Exits 1 when a job failed (its log's last lines are in $OUT/driver.log; no archive for a job that
# left no run folder).
#   OUT=DIR SECS=420 bash scripts/gpu/train.sh JOBS
set -u
SECS=${SECS:-420}
OUT=${OUT:?usage: OUT=DIR SECS=S bash scripts/gpu/train.sh JOBS}
JOBS=${1:?usage: OUT=DIR SECS=S bash scripts/gpu/train.sh JOBS}
[ -f "$JOBS" ] || { echo "$JOBS: no such jobs file (usage: OUT=DIR SECS=S bash scripts/gpu/train.sh JOBS)" >&2; exit 2; }
export PYTHONPATH=${SITE:-$PWD/.gpu/site}:$PWD PYTHONUNBUFFERED=1
LOG=$OUT/driver.log
date -u >> "$LOG"
python3 -c "import torch, compressai, stlpips_pytorch, edgecodec.cli, pytorch_msssim; print(torch.__version__, torch.cuda.is_available())" \
  >> "$LOG" 2>&1 || { echo "IMPORT FAILED" >> "$LOG"; exit 3; }
R=/tmp/runs; mkdir -p $R
C="train.batch_size=16 data.crop=256 data.scale=[0.714,1.0] data.root=.gpu/data train.steps=100000 train.max_seconds=$SECS train.log_every=100 train.val_every=2000 train.ckpt_every=1000 train.keep_checkpoints=1 train.progress=false"
names=(); pids=()
while read -r name args; do
  [ -z "$name" ] && continue
  names+=("$name")
  timeout $((SECS + 120)) python3 -m edgecodec.cli --threads 1 train $args $C --out $R/$name > $R/$name.log 2>&1 &
  pids+=($!)
done < "$JOBS"
for _ in $(seq 60); do  # the GPU's load once the jobs run (not for a minute when they all failed at once)
  [ -n "$(jobs -r)" ] || break; sleep 1
done
[ -n "$(jobs -r)" ] && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> "$LOG" 2>&1
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "${names[$i]}: FAILED (exit $?)" >> "$LOG"; failed=1; }
done
date -u >> "$LOG"
for run in "${names[@]}"; do
  tail -n 2 $R/$run.log >> "$LOG"
  [ -d "$R/$run" ] || continue
  cp $R/$run.log $R/$run/train.log
  python3 scripts/gpu/strip_checkpoint.py "$R/$run" >> "$LOG" 2>&1
  tar czf "$OUT/$run.tgz" -C $R --exclude=tb --exclude=best.pt "$run"
done
exit $failed
