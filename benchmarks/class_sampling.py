"""Per-class agreement of class-aware sampling (issue 15, target: mean ≥ 0.90).

A classifier trained on the real labelled training digits (the downstream
classifier's ceiling model, :func:`neurosql.metrics.classifier.train_classifier`)
labels ``model.sample(1000, label=c)`` for every class c; agreement is the
fraction it puts in class c. Its own accuracy on the real test digits is
reported beside it, as the ceiling of what agreement can show.

    neurosql train --data mnist5k --limit 2000 --epochs 30 --out runs/labels
    python -m benchmarks.class_sampling runs/labels
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from neurosql.data import load_data
from neurosql.metrics.classifier import evaluate_classifier, predict, train_classifier
from neurosql.methods.neurosql import NeuroSQL
from neurosql.persistence import write_json

PER_CLASS = 1000


def run(run_dir: Path, per_class: int = PER_CLASS, seed: int = 0) -> dict:
    torch.set_num_threads(2)
    model = NeuroSQL.load(run_dir / "model.pt", device="cpu")
    train = load_data("mnist5k", "train", progress=False)  # all 3,500 real training digits
    test = load_data("mnist5k", "test", progress=False)
    classifier = train_classifier(train.images, train.labels, epochs=10, seed=seed)
    out = {"classifier_test_accuracy": evaluate_classifier(classifier, test.images, test.labels)["accuracy"]}
    agreement = {}
    for c in model.classes_:
        predicted = predict(classifier, model.sample(per_class, seed=seed, label=c)).numpy()
        agreement[str(c)] = float(np.mean(predicted == train.class_names.index(str(c))))
        print(f"label {c}: agreement {agreement[str(c)]:.3f}", flush=True)
    out |= {"per_class_agreement": agreement, "mean_agreement": float(np.mean(list(agreement.values()))),
            "samples_per_class": per_class, "run": str(run_dir)}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("class_sampling.json"))
    result = run(parser.parse_args().run_dir)
    write_json(parser.parse_args().out, result)
    print(f"mean agreement {result['mean_agreement']:.3f} (classifier test accuracy "
          f"{result['classifier_test_accuracy']:.3f})")
