#!/usr/bin/env bash
# The main job on embedded fake data: fake SYSU-MM01 tree → shards → verify → inspect.
set -euo pipefail
out=${1:-demo}
rm -rf "$out/SYSU-MM01" "$out/shards-sysu"
mkdir -p "$out"
vireid-shard fake sysu "$out/SYSU-MM01" --ids 40
vireid-shard build sysu "$out/SYSU-MM01" "$out/shards-sysu"
vireid-shard verify "$out/shards-sysu" --deep
vireid-shard inspect "$out/shards-sysu"
echo "first queries and gallery of sysu-all trial 0:"
vireid-shard protocol "$out/shards-sysu" sysu-all --trial 0 | python3 -c '
import json, sys
lists = json.load(sys.stdin)
for side in ("query", "gallery"):
    print(f"  {side}: {len(lists[side])} images, e.g.", [e["path"] for e in lists[side][:3]])'
