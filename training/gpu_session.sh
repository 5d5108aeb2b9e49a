#!/usr/bin/env bash
# One accelerator session, end to end: engrave a dataset on the machine's cores, then train
# two CRNN runs side by side on the one GPU, time-boxed, and pack the slimmed checkpoints and
# logs into $OUT, every minute while they train and once at the end (a call killed at its
# limit still brings back the best model so far). Tried on the CPU first with small settings.
#   GEN_SECONDS, TRAIN_MINUTES, GEN_WORKERS, LOADER_WORKERS: time and core budget.
#   RUNS: "preset:batch:lr:init ..." (init: a checkpoint to start from, or empty).
#     The first session trained crnn-lite and crnn-paper from scratch; the later ones went on
#     with the shipped model (commands in models/README.md), which is now crnn-lite-tall. The
#     fifth's recipe for it, with a data seed no run has engraved yet (0-8 and 14 are taken,
#     7 and 14 by CPU runs):
#     GROW=1 GEN_SECONDS=45 TRAIN_MINUTES=8.0 GEN_WORKERS=16 LOADER_WORKERS=12 SEED=9 \
#       EVAL_SAMPLES=300 RUNS="crnn-lite-tall:128:3e-4:models/crnn.pt" bash training/gpu_session.sh
#   WARMUP, EVAL_SAMPLES, EVAL_EVERY: omr-train's --warmup, --eval-samples and --eval-every (300, 500, 400).
#   SEED: the dataset's seed; a session that continues a model engraves a set it has not seen.
#   REQUIRE_CUDA=1: stop at once, not train on the CPU, when the GPU is not visible.
#   PACK_EVERY: seconds between packs of the best checkpoints into $OUT (60).
#   GROW=1: keep engraving (niced, so the loader comes first) while training, which starts
#     after GEN_SECONDS and takes the new staves between epochs (omr-train --grow): the GPU
#     is not what limits a lite run, so the cores left over engrave instead of idling.
#   GROW_EVERY: seconds between those re-reads (60); a CPU trial sets it, EVAL_EVERY and
#     PACK_EVERY low, so that its short run goes through a re-read and a pack. A trial (about
#     a minute here; `timeout -s KILL 45` before `bash` checks what a cut-off call brings back):
#     OUT=/tmp/try WORK=/tmp/omrtry GROW=1 GROW_EVERY=5 EVAL_EVERY=20 PACK_EVERY=10 \
#       GEN_SECONDS=10 TRAIN_MINUTES=0.7 \
#       GEN_WORKERS=1 LOADER_WORKERS=1 COUNT=3000 SEED=5 EVAL_SAMPLES=10 WARMUP=10 PY=python \
#       RUNS="crnn-lite:8:3e-4:models/crnn.pt" bash training/gpu_session.sh
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
GEN_SECONDS=${GEN_SECONDS:-150}; TRAIN_MINUTES=${TRAIN_MINUTES:-5.5}
GEN_WORKERS=${GEN_WORKERS:-15}; LOADER_WORKERS=${LOADER_WORKERS:-6}; COUNT=${COUNT:-60000}
SEED=${SEED:-0}
WORK=${WORK:-/tmp/omr}; mkdir -p "$WORK/pkgs"
PY=${PY:-python3}
# Packages the device image lacks travel as wheels; the project itself goes on PYTHONPATH.
if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl
fi
ln -sfn "$PWD/runtime" "$WORK/pkgs/omr"; ln -sfn "$PWD/training" "$WORK/pkgs/omr_train"
export PYTHONPATH="$WORK/pkgs:$WORK/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import os, torch, verovio, resvg_py, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())
assert torch.cuda.is_available() or not os.environ.get('REQUIRE_CUDA'), 'no GPU'"
nproc
T0=$(date +%s)
CORPUS="--no-corpus"; [ -d .devcarry/cache ] && CORPUS="--cache .devcarry/cache"
staves() { find "$WORK/data" -mindepth 2 -name '*.json' | wc -l; }
if [ -n "${GROW:-}" ]; then
  # Not setsid: with autogroup scheduling a new session would get an equal share of the
  # cores whatever its nice value.
  nice -n 15 $PY -m omr_train.synth.cli --out "$WORK/data" --count "$COUNT" \
      --workers "$GEN_WORKERS" --seed "$SEED" $CORPUS > "$OUT/synth.log" 2>&1 &
  SYNTH=$!
  sleep "$GEN_SECONDS"
  echo "head start of $GEN_SECONDS s: $(staves) staves"
else
  $PY -m omr_train.synth.cli --out "$WORK/data" --count "$COUNT" --workers "$GEN_WORKERS" --seed "$SEED" \
      $CORPUS --max-seconds "$GEN_SECONDS" 2>&1 | tail -n 3
  echo "engraved in $(( $(date +%s) - T0 )) s: $(staves) staves"
fi
RUNS=${RUNS:-"crnn-lite:64:2e-3: crnn-paper:48:1e-3:"}
train() {  # preset batch lr [init]
  $PY -m omr_train.train crnn --data "$WORK/data" --out "$WORK/runs/$1" \
      --preset "$1" --batch-size "$2" --lr "$3" ${4:+--init "$4"} --steps 1000000 \
      --max-minutes "$TRAIN_MINUTES" --warmup "${WARMUP:-300}" --eval-every "${EVAL_EVERY:-400}" --eval-samples "${EVAL_SAMPLES:-500}" \
      --workers "$LOADER_WORKERS" --threads 2 ${GROW:+--grow} ${GROW_EVERY:+--grow-every "$GROW_EVERY"} > "$OUT/$1.log" 2>&1
}
pack() {  # slim each run's best checkpoint so far and put it, with the logs, in $OUT
  local m packed=()
  for m in "${NAMES[@]}"; do
    [ -f "$WORK/runs/$m/log.csv" ] && cp "$WORK/runs/$m/log.csv" "$OUT/$m-log.csv"
    [ -f "$WORK/runs/$m/best.pt" ] || continue
    if [ "$WORK/runs/$m/best.pt" -nt "$WORK/$m.pt" ]; then
      $PY -c "from omr_train.checkpoint import slim; slim('$WORK/runs/$m/best.pt', '$WORK/$m.pt')" || continue
    fi
    packed+=("$m.pt")
  done
  [ ${#packed[@]} -gt 0 ] || return 0
  # Split beside $OUT and moved in whole: a call cut off at its limit brings back the last
  # complete pack, never a half-written one.
  rm -rf "$WORK/pack"; mkdir -p "$WORK/pack"
  (cd "$WORK" && tar -cf - "${packed[@]}") | split -b 15m - "$WORK/pack/models.tar."
  rm -f "$OUT"/models.tar.*; mv "$WORK/pack"/models.tar.* "$OUT/"
}
NAMES=(); PIDS=()
for run in $RUNS; do
  IFS=: read -r preset batch lr init <<< "$run"
  train "$preset" "$batch" "$lr" "$init" & PIDS+=($!); NAMES+=("$preset")
done
# Pack as the runs go, so that a call that outruns its limit still returns the best model so far.
# The stop signal ends the wait at once, but a pack under way stops only once its command in
# hand (a slim, the tar and split) is done: killed mid-command, that command would go on
# writing beside the last pack below, which starts the pack afresh.
( trap 'kill $! 2>/dev/null; exit 0' TERM
  while :; do sleep "${PACK_EVERY:-60}" & wait $!; pack; done ) & PACKER=$!
for k in "${!PIDS[@]}"; do wait "${PIDS[$k]}" || echo "${NAMES[$k]} training failed"; done
kill "$PACKER" 2>/dev/null || true; wait "$PACKER" 2>/dev/null || true
if [ -n "${SYNTH:-}" ]; then
  pkill -P "$SYNTH" 2>/dev/null || true; kill "$SYNTH" 2>/dev/null || true
  echo "engraved in all: $(staves) staves in $(( $(date +%s) - T0 )) s"
fi
for m in "${NAMES[@]}"; do tail -c 600 "$OUT/$m.log" | tr '\r' '\n' | tail -n 3; done
pack
ls -la "$OUT"
