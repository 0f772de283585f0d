# Shared by the training scripts (sourced after `cd` to the repository root): the run folder and
# the helpers every step uses. Not meant to be run on its own.
RUNS=$(mkdir -p "${RUNS:-runs}" && cd "${RUNS:-runs}" && pwd)
export OMP_WAIT_POLICY=PASSIVE      # idle OpenMP threads sleep instead of spinning
one() { OMP_NUM_THREADS=1 nice "$@"; }
two() { OMP_NUM_THREADS=2 nice "$@"; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
# `--resume` refuses a run folder that does not exist yet: pass it only to runs already started.
resume() { if [ -d "$1" ]; then echo "--resume"; fi; }
