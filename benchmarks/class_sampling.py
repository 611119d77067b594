"""Per-class agreement of class-aware sampling (issue 15, target: mean ≥ 0.90).

A classifier trained on the real labelled training digits (the downstream
classifier's ceiling model, :func:`neurosql.metrics.classifier.train_classifier`)
labels ``model.sample(1000, label=c)`` for every class c; agreement is the
fraction it puts in class c. Its own accuracy on the real test digits is
reported beside it, as the ceiling of what agreement can show.

    neurosql train --data mnist5k --limit 2000 --epochs 30 --out runs/labels
    python -m benchmarks.class_sampling runs/labels
    python -m benchmarks.class_sampling runs/labels --rule prior -n 300 --out runs/labels/prior.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from neurosql.data import load_data
from neurosql.metrics.classifier import evaluate_classifier, predict, train_classifier
from neurosql.methods.code_sampling import sample_class_codes
from neurosql.methods.neurosql import NeuroSQL
from neurosql.persistence import write_json

PER_CLASS = 1000


def prior_draw_codes(model: NeuroSQL, label, m: int, seed: int) -> torch.Tensor:
    """The first rule, for comparison: prior draws kept when their 5 nearest training codes vote ``label``."""
    generator = torch.Generator().manual_seed(seed)
    draw = lambda count: model.lattice_.sample_prior(count, generator)
    return sample_class_codes(draw, model.codes_, model.labels_, label, m)


def run(run_dir: Path, per_class: int = PER_CLASS, seed: int = 0, rule: str = "segments") -> dict:
    torch.set_num_threads(2)
    model = NeuroSQL.load(run_dir / "model.pt", device="cpu")
    train = load_data("mnist5k", "train", progress=False)  # all 3,500 real training digits
    test = load_data("mnist5k", "test", progress=False)
    classifier = train_classifier(train.images, train.labels, epochs=10, seed=seed)
    out = {"classifier_test_accuracy": evaluate_classifier(classifier, test.images, test.labels)["accuracy"]}
    agreement = {}
    for c in model.classes_:
        images = (model.sample(per_class, seed=seed, label=c) if rule == "segments"
                  else model.decode(prior_draw_codes(model, c, per_class, seed)))
        predicted = predict(classifier, images).numpy()
        agreement[str(c)] = float(np.mean(predicted == train.class_names.index(str(c))))
        print(f"label {c}: agreement {agreement[str(c)]:.3f}", flush=True)
    out |= {"per_class_agreement": agreement, "mean_agreement": float(np.mean(list(agreement.values()))),
            "samples_per_class": per_class, "rule": rule, "run": str(run_dir)}
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("class_sampling.json"))
    parser.add_argument("--rule", choices=("segments", "prior"), default="segments",
                        help="segments: model.sample(label=c) as shipped; prior: the first rule (prior draws voted c)")
    parser.add_argument("-n", type=int, default=PER_CLASS, help="samples per class")
    args = parser.parse_args()
    result = run(args.run_dir, args.n, rule=args.rule)
    write_json(args.out, result)
    print(f"mean agreement {result['mean_agreement']:.3f} (classifier test accuracy "
          f"{result['classifier_test_accuracy']:.3f})")
