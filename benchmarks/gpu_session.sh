#!/usr/bin/env bash
# What one lease of the GPU host ran (JAX + PyTorch, no TensorFlow; issue 6), in one call:
#   1. benchmarks/gpu_train_step.py: our JAX train step vs PyTorch eager / torch.compile;
#   2. reproduce/figure2.py on the FULL MNIST data at the paper's widths, extended epoch by
#      epoch budget (resume semantics) until the time box runs out; the figure of the last
#      completed extension is kept. Its files state the epochs actually trained.
# Usage (device tool): source .device/setup.sh && bash benchmarks/gpu_session.sh SECONDS
# Outputs under $OUT (at most 8 files come back): bench.json, bench.log, figure2.log and the
# four figure2 files.
set -uo pipefail
budget=${1:-560}
out=${OUT:-/tmp/out}
mkdir -p "$out"
start=$SECONDS
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/bench.log"

timeout ${BENCH_TIMEOUT:-230} python benchmarks/gpu_train_step.py --steps=40 --warmup=3 --rounds=2 \
  --json_out="$out/bench.json" ${BENCH_EXTRA:-} 2>&1 | grep -v "^W0000\|^I0000" | tee -a "$out/bench.log"

# Extend the paper-scale MNIST runs while the time box allows. Each figure2 invocation
# resumes the three runs to --epochs, then evaluates (10,000 samples) and draws.
runs=/tmp/wae_runs
epochs=0
last_cost=0
for next in 1 3 6 10 15 20 30 40 50 60 70 80 90 100; do
  left=$(( budget - (SECONDS - start) ))
  # Cost estimate of the next extension: per-epoch cost of the last one times new epochs,
  # plus the evaluation overhead seen (same as the last invocation's fixed part).
  if (( epochs > 0 )); then
    estimate=$(( per_epoch * (next - epochs) + fixed + 10 ))
    if (( estimate > left )); then
      echo "stop: extending to $next epochs needs ~${estimate} s, ${left} s left" | tee -a "$out/bench.log"
      break
    fi
  fi
  if (( left < 90 )); then echo "stop: ${left} s left" | tee -a "$out/bench.log"; break; fi
  t0=$SECONDS
  rm -rf /tmp/fig2_next && mkdir -p /tmp/fig2_next
  if timeout $(( left - 10 )) python -m reproduce.figure2 --data_dir=.device/data/mnist \
      --workdir=$runs --out_dir=/tmp/fig2_next --epochs=$next ${FIG2_EXTRA:-} >/tmp/fig2_ext.log 2>&1; then
    cat /tmp/fig2_ext.log >>"$out/figure2.log"
    cp /tmp/fig2_next/* "$out/"
    last_cost=$(( SECONDS - t0 ))
    # Seconds of training per epoch (all three models) from the runs' epoch lines; the rest
    # of the invocation (loading, evaluation, drawing) is the fixed part.
    train_s=$(python3 -c 'import re,sys; print(int(sum(float(m) for m in re.findall(r"epoch \d+/\d+: .*\((\d+(?:\.\d+)?) s,", open(sys.argv[1]).read()))))' /tmp/fig2_ext.log)
    per_epoch=$(( (train_s + next - epochs - 1) / (next - epochs) + 1 ))
    fixed=$(( last_cost - train_s ))
    epochs=$next
    echo "figure2 at $epochs epochs done after $(( SECONDS - start )) s (this extension ${last_cost} s: ~${per_epoch} s per epoch for the three models, ${fixed} s fixed)" | tee -a "$out/bench.log"
  else
    cat /tmp/fig2_ext.log >>"$out/figure2.log"
    echo "figure2 extension to $next epochs did not finish in the time box" | tee -a "$out/bench.log"
    break
  fi
done
grep -h "epoch .*/.*:" "$out/figure2.log" | tail -n 6 >>"$out/bench.log" || true
echo "session done after $(( SECONDS - start )) s; figure2 epochs: $epochs" | tee -a "$out/bench.log"
