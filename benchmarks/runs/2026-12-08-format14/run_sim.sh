#!/bin/bash
# The pixel predictor's choices for format 14 (README.md): pixel_sim on the tuning images, in steps.
# Run in a folder holding the images (make_images.py) and pixel_sim.c.
set -e
gcc -O2 -o sim13 pixel_sim.c -lm
gcc -O2 -DZMIN=4 -DUZ=1 -o sim14a pixel_sim.c -lm
gcc -O2 -DZMIN=4 -DUZ=1 -DHP=4 -DSHP=4 -DEHP=4 -o sim14 pixel_sim.c -lm
FILES="gravel.pgm text.pgm hoppergray.pgm dune.ppm ladybird.ppm storm.ppm raindrops.pgm hopper.ppm gravelrgb.ppm"
row() {  # name binary args...
  local n=$1 b=$2; shift 2; printf "| %-44s" "$n"; local tot=0
  for f in $FILES; do v=$(./$b $f "$@"); printf "| %s " $v; tot=$(python3 -c "print($tot+$v)"); done
  python3 -c "print('| %.4f |' % ($tot / 9))"
}
printf "| step"; for f in $FILES; do printf " | %s" ${f%.*}; done; echo " | mean |"
row "format 13's predictor (8 predictions)" sim13 0 0 0 8 4 0x303F 0
row "+ errors at the neighbours, half and half" sim13 2 0 0 8 4 0x303F 0
row "+ 24 predictions" sim13 2 0 0 8 4 0xFFFFFF 0
row "+ scale from the final misses' energy" sim13 2 0 0 8 4 0xFFFFFF 12
row "+ energy of the corrected MED's misses" sim13 2 0 0 8 4 0xFFFFFF 12 0 6
row "+ 4 activity contexts, rate 1/8" sim13 2 0 0 4 3 0xFFFFFF 12 0 6
row "+ least scale 4 where the neighbours are met" sim14a 2 0 0 4 3 0xFFFFFF 12 0 6
row "+ 4 more bits in the tables (format 14)" sim14 2 0 0 4 3 0xFFFFFF 12 0 6
row "rejected: errors at the neighbours alone" sim14 1 0 0 4 3 0xFFFFFF 12 0 6
row "rejected: energy as a context of the tables" sim14 2 2 0 4 3 0xFFFFFF 12 0 6
row "rejected: the channel before's miss as a context" sim14 2 0 1 4 3 0xFFFFFF 12 0 6
row "rejected: bias by a texture pattern" sim14 2 0 0 4 3 0xFFFFFF 12 1 6
row "rejected: rate 1/4" sim14 2 0 0 4 2 0xFFFFFF 12 0 6
