#!/usr/bin/env bash
# The paper-scale Figure 2 run on a lent GPU (issue: first paper-scale result), one model
# per call: full MNIST (60,000 / 10,000), paper widths, 100 epochs, batch 100, float32,
# Keras on JAX. Writes that model's bundle (no weights) and the log to $OUT.
#
#   (a GPU machine with jax[cuda], keras and this package installed; DATA_DIR = the MNIST files)
#   run(carry=[".device"], timeout_s=590,
#       command="source .device/setup.sh && bash benchmarks/gpu_figure2_paper.sh wae_gan 560")
#
# Order per the issue: wae_gan, then wae_mmd, then vae. A model that does not finish in
# SECONDS leaves its run in /tmp/wae_runs (checkpoint every CHECKPOINT_EVERY epochs); the
# same command in the next call resumes it while the machine is still warm (/tmp survives
# ~30 s of idle). Checkpoints never come back through $OUT (~250 MB each).
# Cadence (math unchanged, tests/test_train.py): checkpoint and validate every 10 epochs,
# sample grids every 50; each also after the last epoch.
# Then, here: python -m reproduce.figure2 --assemble=B1,B2,B3 --out_dir=results/figure2_paper
set -uo pipefail
model=${1:?usage: gpu_figure2_paper.sh MODEL [SECONDS]}
budget=${2:-560}
out=${OUT:-/tmp/out}
data=${DATA_DIR:-.device/data/mnist}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  | tee "$out/${model}.log"
timeout --signal=INT "$budget" python -m reproduce.figure2 --data_dir="$data" \
  --workdir=/tmp/wae_runs --out_dir=/tmp/fig2_bundles --models="$model" \
  --checkpoint_every="${CHECKPOINT_EVERY:-10}" --validate_every="${VALIDATE_EVERY:-10}" \
  --sample_every="${SAMPLE_EVERY:-50}" ${FIG2_EXTRA:-} >>"$out/${model}.log" 2>&1
status=$?
bundle=/tmp/fig2_bundles/bundles/figure2_${model}
if [ "$status" -eq 0 ] && [ -d "$bundle" ]; then
  mkdir -p "$out/figure2_${model}"
  cp "$bundle"/* "$out/figure2_${model}/"
  echo "bundle figure2_${model} written (exit 0)" | tee -a "$out/${model}.log"
else
  grep -h "epoch [0-9]*/" "$out/${model}.log" | tail -n 2
  echo "not finished (exit $status): rerun the same command to resume from /tmp/wae_runs" \
    | tee -a "$out/${model}.log"
fi
exit "$status"
