"""The ``neurosql`` command: parses arguments and wires the library together.

Bad input ends with ``error: <message>`` on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np

from .benchmark import add_benchmark_parser, cmd_benchmark
from .errors import NeuroSQLError
from .model import NeuroSQL, NeuroSQLConfig

DATA_HELP = (
    "data spec: omitted or 'mnist5k' = the embedded 5,000 real MNIST digits; "
    "KIND:PATH with KIND in mnist, folder, celeba, afhq, oasis, nifti, npy; "
    "or a bare PATH whose layout is detected"
)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One ``--flag`` per config field, with the field's default and help (no second list)."""
    for f in fields(config_cls):
        default = f.default if f.default is not MISSING else None
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, choices=f.metadata.get("choices"), help=help_text)


def config_from_args(args: argparse.Namespace, config_cls):
    return config_cls(**{f.name: getattr(args, f.name) for f in fields(config_cls)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurosql", description="Generative models by quantile assignment: no encoder, no discriminator."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train NeuroSQL and write a run directory")
    train.add_argument("--data", default=None, help=DATA_HELP)
    train.add_argument("--resolution", type=int, default=None, help="resize images to this square size (default: the layout's: 28 MNIST, 64 CelebA, 128 AFHQ/OASIS, else native)")
    train.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grayscale, 3 = RGB (default: the layout's)")
    train.add_argument("--limit", type=int, default=None, help="cap on training images, a seeded stratified choice (paper: ~2000)")
    train.add_argument("--out", default="runs/neurosql", help="run directory to write (default: runs/neurosql)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue an interrupted run from its last checkpoint (its own options and data are used)")
    train.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                       help="end with a light evaluation on the test split: metrics.json, report.md (default: on)")
    add_config_arguments(train, NeuroSQLConfig)

    sample = sub.add_parser("sample", help="draw images from a trained model")
    sample.add_argument("--checkpoint", required=True, help="run directory or model.pt")
    sample.add_argument("-n", "--num", type=int, default=64, help="number of images (default: 64)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    sample.add_argument("--out", default="samples.png", help="PNG grid to write; the images also go to the same name .npy")
    sample.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    evaluate = sub.add_parser("evaluate", help="evaluate a trained model: metrics.json, report.md and pictures")
    evaluate.add_argument("--checkpoint", required=True, help="run directory written by 'neurosql train'")
    evaluate.add_argument("--data", default=None, help="real images to compare with (default: the run's data); " + DATA_HELP)
    evaluate.add_argument("--split", default="test", help="split of --data holding the real held-out images (default: test)")
    evaluate.add_argument("--out", default=None, help="folder for the report (default: RUN/eval)")
    evaluate.add_argument("-n", "--num", type=int, default=2048, help="real and generated images per feature metric (default: 2048)")
    evaluate.add_argument("--seed", type=int, default=0, help="metric sampling seed (default: 0)")
    evaluate.add_argument("--downstream", action=argparse.BooleanOptionalAction, default=True,
                          help="train a classifier on generated images, test on real ones (default: on when labelled)")
    evaluate.add_argument("--n-synthetic", type=int, default=10_000, help="generated images for the downstream classifier")
    evaluate.add_argument("--classifier-epochs", type=int, default=10, help="downstream classifier epochs (default: 10)")
    evaluate.add_argument("--refine-steps", type=int, default=0, help="gradient steps refining held-out codes (default: 0)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    add_benchmark_parser(sub)
    return parser


def print_metrics(metrics: dict) -> None:
    keys = [k for k in ("pfid", "kid", "precision", "recall", "density", "coverage", "ssim", "nearest_real_ssim",
                        "recon_ssim", "lpips", "downstream_accuracy", "ceiling_accuracy") if k in metrics]
    for key in keys:
        value = metrics[key]
        print(f"  {key:<20} {value:.4f}" if isinstance(value, float) else f"  {key:<20} {value}")


def cmd_train(args: argparse.Namespace) -> None:
    from .data import load_data, load_validation
    from .distributed import init_from_environment
    from .persistence import ensure_writable_dir
    from .runs import load_run_data, load_run_validation, write_config, write_run

    main_process = init_from_environment().is_main  # under torchrun, only rank 0 writes the run
    if args.resume:
        out = ensure_writable_dir(args.resume)
        data = load_run_data(out, "train")
        val = load_run_validation(out, data)
        start = time.perf_counter()
        model = NeuroSQL.resume(out / "model.pt", data.images, None if val is None else val.images, device=args.device)
        config = model.config
    else:
        config = config_from_args(args, NeuroSQLConfig)
        config.validate()
        if args.limit is not None and args.limit < 2:
            raise NeuroSQLError(f"--limit must be >= 2, got {args.limit}")
        out = ensure_writable_dir(args.out)
        data = load_data(
            args.data, "train", resolution=args.resolution, channels=args.channels, limit=args.limit,
            seed=config.seed, progress=config.progress,
        )
        val = load_validation(data.source, len(data), config.val_fraction, resolution=data.images.shape[-1],
                              channels=data.images.shape[1], seed=config.seed, progress=config.progress)
        data_info = {"spec": data.source, "split": "train", "n": len(data), "resolution": args.resolution,
                     "channels": args.channels, "limit": args.limit, "n_val": None if val is None else len(val)}
        if main_process:
            write_config(out, NeuroSQL.kind, config, data_info)  # first, so that --resume finds the data
        start = time.perf_counter()
        model = NeuroSQL(config).fit(data.images, None if val is None else val.images, checkpoint=out / "model.pt")
    if not main_process:
        return
    write_run(model, out, data.images, wall_time=time.perf_counter() - start)
    if args.evaluate:
        from .evaluation import evaluate_model, write_evaluation

        test = load_run_data(out, "test", progress=False)
        metrics = evaluate_model(model, test.images, seed=config.seed, light=True)
        write_evaluation(model, out, metrics, test.images, data.labels, seed=config.seed)
        print_metrics(metrics)
    last = model.log_.rows[-1]
    print(
        f"trained {model.epochs_run_} epochs on {len(data)} images ({model.n_parameters:,} parameters) "
        f"in {time.perf_counter() - start:.0f} s; train ℓ {last['train_loss']:.4f}; run written to {out}"
    )


def cmd_sample(args: argparse.Namespace) -> None:
    from .methods import load_model
    from .persistence import atomic_write
    from .report import save_grid

    if args.num < 1:
        raise NeuroSQLError(f"--num must be >= 1, got {args.num}")
    model = load_model(args.checkpoint, device=args.device)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise NeuroSQLError(f"output folder {out.parent} does not exist; create it or choose another --out")
    images = model.sample(args.num, seed=args.seed)
    save_grid(images, out)
    atomic_write(out.with_suffix(".npy"), lambda f: np.save(f, images.numpy()))
    print(f"wrote {args.num} samples to {out} and {out.with_suffix('.npy')}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_model, write_evaluation
    from .methods import load_model
    from .persistence import ensure_writable_dir
    from .runs import load_run_data

    if args.num < 2 or args.n_synthetic < 10 or args.classifier_epochs < 1 or args.refine_steps < 0:
        raise NeuroSQLError("--num must be >= 2, --n-synthetic >= 10, --classifier-epochs >= 1, --refine-steps >= 0")
    model = load_model(args.checkpoint, device=args.device)
    run_dir = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(args.checkpoint).parent
    out = ensure_writable_dir(args.out or run_dir / "eval")
    test = load_run_data(run_dir, args.split, spec=args.data)
    train = load_run_data(run_dir, "train", progress=False)
    if len(train) <= model.train_index_.max():
        raise NeuroSQLError("the run's training data changed since training; pass the original --data")
    if tuple(test.images.shape[1:]) != tuple(model.image_shape_):
        raise NeuroSQLError(
            f"--data images are {tuple(test.images.shape[1:])} but the model makes {tuple(model.image_shape_)}; "
            "use matching data"
        )
    labelled = train.labels is not None and test.labels is not None
    metrics = evaluate_model(
        model, test.images, train_labels=train.labels, real_train=train.images, test_labels=test.labels,
        n=args.num, seed=args.seed, downstream=args.downstream and labelled, n_synthetic=args.n_synthetic,
        classifier_epochs=args.classifier_epochs, refine_steps=args.refine_steps,
    )
    write_evaluation(model, out, metrics, test.images, train.labels, seed=args.seed)
    print_metrics(metrics)
    print(f"report written to {out / 'report.md'}")


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "benchmark": cmd_benchmark}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except NeuroSQLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
