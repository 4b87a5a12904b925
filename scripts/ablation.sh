#!/usr/bin/env bash
# The CAE / CRB / GCRB ablation, end to end: train the three with the same data pipeline, crop,
# batch, rate range and step budget, export each as a model, evaluate them on Kodak next to the
# classical codecs, and draw the training charts.
#
#   bash scripts/ablation.sh                 # the full schedule of edgecodec/configs/{cae,crb,gcrb}.yaml
#   STEPS=6000 bash scripts/ablation.sh      # a shorter, equal budget for all three (in runs/ablation-6000)
#   WARM_GCRB=1 bash scripts/ablation.sh     # GCRB starts from the trained CRB (its GAN phase only)
#
#   OVERRIDES="train.val_every=250" ...  # config overrides for all three runs (new runs only)
# RUNS, DATA, KODAK, EVAL_OUT and CHART move the run folders, the data and the outputs.
# Re-running continues: a run folder with checkpoints is resumed, eval only measures what is missing.
# Outputs: runs/ablation/{cae,crb,gcrb} (checkpoints, logs; not committed), models exported to
# runs/ablation/models, results/ablation (per-image CSV, summary.json, table.md, plots, report.html
# with side-by-side crops, the runs' configs / logs / commands and model cards),
# docs/ablation_training.png (PSNR / SSIM / bpp against step), docs/ablation_crops.png (kodim01).
# A STEPS other than the configs' train.steps (a shorter budget, a smoke test) keeps all of that in
# runs/ablation-STEPS instead (runs, models, results/, ablation_training.png, ablation_crops.png), so
# it neither overwrites the committed results nor leaves run folders for the full run to resume.
# EVAL_JOBS=2 evaluates two images at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${STEPS:-}" && ! "$STEPS" =~ ^[1-9][0-9]*$ ]]; then
  echo "ablation: STEPS=$STEPS is not a positive whole number of steps" >&2
  exit 2
fi
bash scripts/setup.sh
edgecodec=.venv/bin/edgecodec
# the full schedule: train.steps of the three configs (one number where they agree)
full_steps=$(.venv/bin/python -c 'import yaml
print(*sorted({yaml.safe_load(open(f"edgecodec/configs/{n}.yaml"))["train"]["steps"] for n in ("cae", "crb", "gcrb")}))')
if [[ -z "${STEPS:-}" || "$STEPS" == "$full_steps" ]]; then  # the published run
  runs=${RUNS:-runs/ablation}
  eval_out=${EVAL_OUT:-results/ablation}
  chart=${CHART:-docs/ablation_training.png}
else  # a shorter budget: nothing of it in results/ or docs/, nor in the full run's run folders
  runs=${RUNS:-runs/ablation-$STEPS}
  eval_out=${EVAL_OUT:-runs/ablation-$STEPS/results}
  chart=${CHART:-runs/ablation-$STEPS/ablation_training.png}
fi
data=${DATA:-../shared/data/train}
kodak=${KODAK:-../shared/data/kodak}
steps_args=()
read -r -a overrides <<< "${OVERRIDES:-}"
if [[ -n "${STEPS:-}" ]]; then
  steps_args=(--steps "$STEPS")
fi
mkdir -p "$runs/models"

train() {  # name, extra overrides...
  local name=$1
  shift
  if [ -f "$runs/$name/config.yaml" ]; then  # started before: continue it (from step 0 if it has no checkpoint)
    "$edgecodec" train --resume "$runs/$name" "${steps_args[@]}"
  else
    "$edgecodec" train --config "edgecodec/configs/$name.yaml" --data "$data" --out "$runs/$name" "${steps_args[@]}" \
      "${overrides[@]}" "$@"
  fi
}

train cae
train crb
if [[ -n "${WARM_GCRB:-}" ]]; then
  train gcrb train.init_from="$runs/crb/best.pt" gan.disc_start=0
else
  # the same share of pure rate-distortion steps as the full schedule (a third)
  train gcrb ${STEPS:+gan.disc_start=$((STEPS / 3))}
fi

export EDGECODEC_MODEL_PATH="$runs/models${EDGECODEC_MODEL_PATH:+:$EDGECODEC_MODEL_PATH}"  # before the exports
for name in cae crb gcrb; do
  "$edgecodec" export-model "$runs/$name" --name "ablation-$name" --out "$runs/models" --force -q
done
"$edgecodec" eval "$kodak" --models ablation-cae,ablation-crb,ablation-gcrb --codecs jpeg,webp,avif,jxl \
  --out "$eval_out" --crop-bpp 0.3 --jobs "${EVAL_JOBS:-1}"
# What the repository keeps of the runs: configs, logs, command lines, model cards (not weights).
for name in cae crb gcrb; do
  mkdir -p "$eval_out/runs/$name"
  cp "$runs/$name"/{config.yaml,log.csv,val.csv,launches.jsonl} "$eval_out/runs/$name/"
done
mkdir -p "$eval_out/models"
cp "$runs"/models/ablation-*.json "$eval_out/models/"
mkdir -p "$(dirname "$chart")"
cp "$eval_out/crops/kodim01_strip.png" "$(dirname "$chart")/ablation_crops.png"
"$edgecodec" plot-training "$runs/cae" "$runs/crb" "$runs/gcrb" -o "$chart" --force
echo "ablation: $eval_out/table.md, $eval_out/report.html, $chart"
