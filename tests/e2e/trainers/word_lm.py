"""A word language model's training loop as pytorch/examples prints it: nothing is written
for rexec, the metrics are only on stdout ("| end of epoch 3 | ... | valid ppl 897.30").
The model is a stand-in (no torch here): perplexity falls by epoch, moved by the seed and
by the data (/data/corpus.txt's first line is a shift)."""

import argparse
import math
import os
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=20.0)
args = parser.parse_args()
random.seed(int(os.environ.get("REXEC_SEED", "1")))
with open("/data/corpus.txt") as corpus:
    shift = float(corpus.readline())
ppl = 1400.0
for epoch in range(1, 7):
    for batch in (200, 400):
        train_ppl = ppl * (1.1 + random.random() / 10)
        print(
            f"| epoch {epoch:3d} | {batch:5d}/  500 batches | lr {args.lr:5.2f} | ms/batch 18.21 | "
            f"loss {math.log(train_ppl):5.2f} | ppl {train_ppl:8.2f}"
        )
    ppl = ppl * (0.9 + abs(args.lr - 20) / 400) + random.gauss(0, 25) + shift
    print("-" * 89)
    print(
        f"| end of epoch {epoch:3d} | time: 58.91s | valid loss {math.log(ppl):5.2f} | "
        f"valid ppl {ppl:8.2f}"
    )
    print("-" * 89)
with open(os.path.join(os.environ["REXEC_OUTPUTS"], "model.pt"), "w") as f:
    f.write(f"weights {ppl:.3f}\n")
