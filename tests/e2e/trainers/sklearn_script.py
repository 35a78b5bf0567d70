"""A scikit-learn-style script: fit, cross-validate, dump the scores as JSON. rexec reads
every number of a JSON output; the list of fold scores is a series, not five metrics."""

import json
import os
import random

random.seed(int(os.environ.get("REXEC_SEED", "1")))
with open("/data/corpus.txt") as corpus:
    shift = float(corpus.readline()) / 10000
folds = [0.84 + random.gauss(0, 0.01) - shift for _ in range(5)]
scores = {"accuracy": sum(folds) / len(folds), "cv": {"fold_accuracy": folds}}
with open(os.path.join(os.environ["REXEC_OUTPUTS"], "scores.json"), "w") as f:
    json.dump(scores, f)
