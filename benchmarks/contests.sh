#!/bin/bash
# The five contest stand-ins at their default sizes, each trained briefly from scratch (small_resnet, 32 px,
# 2 folds x 6 epochs, lr 0.003, no TTA) and scored against the stand-in's answers: shows each stand-in is
# learnable through its contest's layout. Usage: bash benchmarks/contests.sh [WORKDIR]   (figures: docs/benchmarks.md)
set -e
work=${1:-bench/contests}
mkdir -p "$work"
run() {  # NAME RUN-NAME [extra train flags; a later --img-size wins]
  python3 -m comptk train "$1" --workdir "$work" --name "$2" --folds 2 --epochs 6 --img-size 32 --model small_resnet \
    --no-pretrained --batch-size 32 --lr 0.003 --tta none --quiet --no-plots "${@:3}"
  python3 -m comptk score "$work/submissions/$2.csv" --answers "$work/data/$1/answers.csv"
}
for c in artist kfood mask cifar10 illustration; do
  python3 -m comptk prepare "$c" --workdir "$work" --force
  run "$c" "bench-$c"
done
run mask bench-mask-heads --heads 3x2x3
# artist at 64 px (a 0.5 crop of 64 px = 32 px, the scale of its 32-64 px test crops): recipe vs whole images
run artist bench-artist64-crop --img-size 64
run artist bench-artist64-naive --img-size 64 --augment flip --valid-crop whole
