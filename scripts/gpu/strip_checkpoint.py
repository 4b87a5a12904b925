"""Rewrite a run's last checkpoint without its optimizer states, so it travels light between this
machine and the lent GPU machine. The discriminator's weights stay: a continued GCRB stage that
starts from the checkpoint (train.init_from=...ckpt-N.pt) keeps a discriminator that has learned to
tell real from decoded crops, where a fresh one needed 1,000-1,800 GPU steps before its hinge loss
left 2 (results/shipped-runs/gpu-2026-12-04).
  python scripts/gpu/strip_checkpoint.py RUN_DIR [DEST]   # DEST: write there instead of in place
"""
import glob
import os
import sys

import torch

run = sys.argv[1]
checkpoints = sorted(glob.glob(f"{run}/ckpt-*.pt"))
if not checkpoints:
    sys.exit(f"{run}: no checkpoint")
state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
for key in ("optimizer", "aux_optimizer", "disc_optimizer", "rank_rng"):
    state.pop(key, None)
dest = sys.argv[2] if len(sys.argv) > 2 else checkpoints[-1]
os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
torch.save(state, dest)
print(run, "step", state["step"], "elapsed", round(state.get("elapsed_s", 0)),
      "lr drop", state.get("time_drop_step"), "discriminator" if "disc" in state else "")
