"""A character-level transformer's loop as such trainers log it: scalars to TensorBoard
through tensorboardX's SummaryWriter (what torch.utils.tensorboard writes too), nothing
for rexec. The model is a stand-in; the loss falls by step, moved by seed and data."""

import os
import random

from tensorboardX import SummaryWriter

random.seed(int(os.environ.get("REXEC_SEED", "1")))
with open("/data/corpus.txt") as corpus:
    shift = float(corpus.readline()) / 1000
writer = SummaryWriter(os.path.join(os.environ["REXEC_OUTPUTS"], "tb"))
loss = 4.2
for step in range(1, 301):
    loss = loss * 0.992 + random.gauss(0, 0.01) + shift / 300
    writer.add_scalar("train/loss", loss, step)
    if step % 50 == 0:
        writer.add_scalar("val/loss", loss + 0.1 + random.gauss(0, 0.03), step)
writer.close()
with open(os.path.join(os.environ["REXEC_OUTPUTS"], "model.pt"), "w") as f:
    f.write(f"weights {loss:.6f}\n")
