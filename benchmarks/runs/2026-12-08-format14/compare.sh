#!/bin/bash
# compare.sh OUT IMAGES...: archive bytes of format 13 (a worktree of 765b45b at /tmp/frozen, kernels built)
# and of this tree (/work/main), library defaults, one image at a time
out=$1; shift
for f in "$@"; do
  a=$(cd /tmp && PYTHONPATH=/tmp/frozen python -m bytezip compress -c -q "$f" | wc -c)
  b=$(cd /tmp && PYTHONPATH=/work/main python -m bytezip compress -c -q "$f" | wc -c)
  echo "$(basename "$f") $(stat -c %s "$f") format13=$a format14=$b" >> "$out"
done
