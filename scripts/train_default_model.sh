#!/usr/bin/env bash
# Train the bundled default model (src/mardini/assets/default) from scratch on 2 CPU cores, with
# the project's own commands: the frame autoencoder, then every stage of the recipe in configs/.
# Every step resumes (--resume, finished caches are kept), so after an interruption run it again.
#
#   RUNS=runs bash scripts/train_default_model.sh        # about 2 hours on a 2-core CPU
#
# Layout of the 2 cores: the autoencoder trains alone (2 threads); then one core encodes the
# 9-frame latent cache while the other encodes the small one and trains the warm-up stages;
# stages 2 and 3 train alone from the 9-frame cache. (Should the autoencoder fall short of its
# target, `configs/vae_decoder.yaml` keeps training its decoder beside the transformers and
# `mardini export --codec` swaps it in; this run's autoencoder did not need it.)
# docs/training.md records what this produced (commands, seeds, wall time, loss curves).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=$(mkdir -p "${RUNS:-runs}" && cd "${RUNS:-runs}" && pwd)
export OMP_WAIT_POLICY=PASSIVE      # idle OpenMP threads sleep instead of spinning
one() { OMP_NUM_THREADS=1 nice "$@"; }
two() { OMP_NUM_THREADS=2 nice "$@"; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
cache() {  # cache CONFIG OUT EPOCHS: build a latent cache once (an interrupted build is redone)
  [ -f "$2/index.json" ] || one mardini cache --config "$1" --out "$2" --model mardini-cpu \
      --codec "$RUNS/vae" --epochs "$3" --overwrite
}

log "autoencoder"
two mardini train-vae --config configs/vae.yaml --out "$RUNS/vae" --resume --quiet

log "warm-up stages | latent caches"
(
  cache configs/stage1a_generator.yaml "$RUNS/cache-5x96" 1
  one mardini train --config configs/stage1a_generator.yaml --out "$RUNS/stage1a" --resume --quiet \
      --override codec="$RUNS/vae" --override "data={kind: latents, path: $RUNS/cache-5x96}"
  one mardini train --config configs/stage1b_planner.yaml --out "$RUNS/stage1b" --resume --quiet \
      --override init="$RUNS/stage1a" --override "data={kind: latents, path: $RUNS/cache-5x96}"
) &
warmup=$!
cache configs/stage2_joint_interpolation.yaml "$RUNS/cache-9x128" 2 &
cache9=$!
wait $warmup $cache9

log "stage 2: joint, interpolation"
two mardini train --config configs/stage2_joint_interpolation.yaml --out "$RUNS/stage2" --resume --quiet \
    --override init="$RUNS/stage1b" --override "data={kind: latents, path: $RUNS/cache-9x128}" \
    --override compile=true
log "stage 3: joint, fewer references"
two mardini train --config configs/stage3_joint_task.yaml --out "$RUNS/stage3" --resume --quiet \
    --override init="$RUNS/stage2" --override "data={kind: latents, path: $RUNS/cache-9x128}"

log "export: half precision"
mardini export --checkpoint "$RUNS/stage3/checkpoints/$(ls "$RUNS/stage3/checkpoints" | tail -1)" \
    --out "$RUNS/export" --force
log "done: $RUNS/export"
