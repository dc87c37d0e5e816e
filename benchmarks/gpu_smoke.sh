#!/usr/bin/env bash
# The GPU path, measured (issue 18, item 3), in one command on a CUDA machine. No hub: the architectures are
# built with random weights (model.name=random:<shape>), the data is the bundled real-text sample.
#
#   bash benchmarks/gpu_smoke.sh                  # every stage (≈ 20–30 min on one H100)
#   bash benchmarks/gpu_smoke.sh overhead fsdp    # some of: overhead compile train fsdp
#
# Stages (each prints its numbers; everything is also under $OUT, default runs/gpu-smoke):
#   overhead  Gemma-2-2B shape: tokens/s, MFU, peak memory; step time with/without the SAE bank (1 and 2 hooks)
#             and the diversity regulariser, interleaved in one process, beside the FLOP floor
#   compile   the same with train.compile=true (compare its "plain" line with the eager one)
#   train     the whole trainer on the Gemma shape (evals, probes, SAEs, a checkpoint, latent records): eval time
#             against training time at the preset's cadence, train/data_wait_frac, peak memory
#   fsdp      the largest Llama-3-8B shape (layers 16, 12, 8, 4: the first that fits) under torchrun + FSDP2 on
#             this one GPU (nccl), a few steps
# Paste the output into benchmarks/RESULTS.md with the GPU's name (printed first).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-smoke}
mkdir -p "$OUT"
STAGES=${*:-overhead compile train fsdp}
GEMMA=(--preset gemma-2b model.name=random:gemma-2-2b data.origin=sample train.grad_accum=4 logging.wandb_mode=disabled)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
status=0

summary() {  # median tokens/s (after 3 warm-up steps), data wait, MFU, peak memory, eval time of a run dir
  python - "$1" <<'EOF'
import statistics, sys
from chrono_membench.logging import read_metrics
rows = read_metrics(f"{sys.argv[1]}/metrics.jsonl")
def med(key, after=3):
    values = [r[key] for r in rows if key in r and r["step"] > after]
    return statistics.median(values) if values else float("nan")
evals = [r["time/eval_s"] for r in rows if "time/eval_s" in r]
print(f"{sys.argv[1]}: {med('train/tokens_per_s'):,.0f} tokens/s, MFU {med('train/mfu'):.1%}, "
      f"peak {med('train/peak_mem_gib'):.1f} GiB, data wait {med('train/data_wait_frac'):.2%} of the step, "
      f"eval {', '.join(f'{e:.0f}' for e in evals)} s")
EOF
}

for stage in $STAGES; do
  echo "=== $stage"
  case $stage in
    overhead) python benchmarks/step_overhead.py "${GEMMA[@]}" --repeats 6 2>&1 | tee "$OUT/overhead.txt" || status=1 ;;
    compile) python benchmarks/step_overhead.py "${GEMMA[@]}" train.compile=true --repeats 6 2>&1 | tee "$OUT/compile.txt" || status=1 ;;
    train)
      rm -rf "$OUT/gemma-train"
      # 20 steps, evals at 0 and 20 (the preset's buckets, probes and SAEs); the preset evaluates every 250 steps
      python experiments/run.py "${GEMMA[@]}" --no-progress train.max_steps=20 train.eval_every=20 train.log_every=1 \
        train.chrono_every=10 run.out_dir="$OUT" run.name=gemma-train 2>&1 | tail -20 | tee "$OUT/train.txt" || status=1
      summary "$OUT/gemma-train" | tee -a "$OUT/train.txt"
      rm -rf "$OUT/gemma-train/checkpoints" "$OUT/gemma-train/final_model"  # tens of GB
      ;;
    fsdp)
      for layers in 16 12 8 4; do
        rm -rf "$OUT/llama-fsdp"
        if torchrun --standalone --nproc_per_node 1 experiments/run.py --preset llama-3-8b --no-progress \
            model.name=random:llama-3-8b model.random_layers=$layers data.origin=sample train.grad_accum=2 \
            train.max_steps=6 train.eval_every=6 train.log_every=1 logging.wandb_mode=disabled \
            run.out_dir="$OUT" run.name=llama-fsdp > "$OUT/fsdp-$layers.log" 2>&1; then
          echo "llama-3-8b shape, $layers layers, FSDP2 on 1 GPU:" | tee "$OUT/fsdp.txt"
          summary "$OUT/llama-fsdp" | tee -a "$OUT/fsdp.txt"
          rm -rf "$OUT/llama-fsdp/checkpoints" "$OUT/llama-fsdp/final_model"
          break
        fi
        echo "$layers layers: failed ($(grep -m1 -oE 'OutOfMemoryError|Error[^\n]{0,120}' "$OUT/fsdp-$layers.log"))"
        [ "$layers" = 4 ] && status=1
      done
      ;;
    *) echo "unknown stage $stage (allowed: overhead compile train fsdp)"; status=2 ;;
  esac
done
exit $status
