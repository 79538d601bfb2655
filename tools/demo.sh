#!/usr/bin/env bash
# The main job on embedded fake data, end to end on the CPU (9 minutes on 2 cores without AVX-512):
# fake SYSU-MM01 tree → shards → verify → inspect → short AGW training (resnet18, small
# images, --amp auto: float32 on a CPU, where bf16 is slow without AVX-512) → evaluation of
# the final checkpoint on every sysu-all trial → a short CAJ run from the decoded host cache
# → its evaluation with flip averaging.
set -euo pipefail
out=${1:-demo}
rm -rf "$out"
mkdir -p "$out"
start=$(date +%s)

vireid-shard fake sysu "$out/SYSU-MM01" --ids 40 --images-per-camera 3
vireid-shard build sysu "$out/SYSU-MM01" "$out/shards" --width 64 --height 128
vireid-shard verify "$out/shards" --deep
vireid-shard inspect "$out/shards"

vireid-train --shards "$out/shards" --out "$out/run" --arch resnet18 --pretrained none \
    --epochs 20 --warmup-epochs 3 --milestones 12 17 --eval-every 5
vireid-test --shards "$out/shards" --checkpoint "$out/run/checkpoints/last.pt" \
    --json "$out/test.json" --rank-lists 2

vireid-train --shards "$out/shards" --out "$out/caj" --method caj --cache host \
    --arch resnet18 --pretrained none --epochs 10 --warmup-epochs 2 \
    --milestones 6 8 --eval-every 5
vireid-test --shards "$out/shards" --checkpoint "$out/caj/checkpoints/last.pt" --flip \
    --json "$out/test-caj.json"

test_ids=$(tr ',' '\n' < "$out/SYSU-MM01/exp/test_id.txt" | grep -c .)
echo "chance Rank-1 with $test_ids test identities: $(python3 -c "print(f'{100/$test_ids:.2f}')")%"
echo "demo finished in $(( $(date +%s) - start )) s; run folder: $out/run"
