#!/usr/bin/env bash
# Lay out the benchmark assets where the bench configs look for them
# ($MMSHIP_BENCH, default data/bench): CamVid, CIFAR-10 1k and the DINOv2
# ViT-S/14 weights converted to a plain fp32 timm-layout checkpoint.
#   bash tools/benchmark/prepare_bench.sh [SRC=../shared/bench]
set -euo pipefail
src=${1:-../shared/bench}
dst=${MMSHIP_BENCH:-data/bench}
mkdir -p "$dst/weights"
for d in camvid cifar10_1k; do
  [ -e "$dst/$d" ] || ln -s "$(cd "$src/$d" && pwd)" "$dst/$d"
done
out="$dst/weights/dinov2_vits14_fp32.pth"
[ -f "$out" ] || python "$src/weights/load_dinov2.py" \
  "$src/weights/dinov2_vits14_int8.pth" "$out"
echo "bench assets ready in $dst"
