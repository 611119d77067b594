"""The ``neurosql`` command: parses arguments and wires the library together.

Bad input ends with ``error: <message>`` on stderr and exit code 2, no traceback,
and leaves every file as it was (see :mod:`neurosql.runs`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .benchmark import add_benchmark_parser, cmd_benchmark
from .engine.config import (PRESETS, EncodeOptions, EvaluateOptions, SampleOptions, TrainConfig, add_config_arguments,
                            given_values, merged_config)
from .errors import NeuroSQLError
from .loggers import LOGGERS
from .metrics import LEAD_KEYS, PRDC_KEYS
from .metrics.memorisation import NOTE_MIN_HELD_OUT, soft_not_copies
from .methods import CONFIGS, load_model, method_class
from .warning_lines import one_line_warnings

DEFAULT_OUT = "runs/neurosql"
DEVICE_HELP = TrainConfig.__dataclass_fields__["device"].metadata["help"]  # the train flag's, for sample and evaluate
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
RESUME_FLAGS = ("device", "epochs", "steps", "progress")  # what --resume may change: where and how visibly it runs, the budget
DATA_FLAGS = ("data", "resolution", "channels", "limit", "out")
OPTIONAL_METRICS = ("vgg_reason", "lpips_reason")  # skipped by design in the light evaluation or without weights
DATA_HELP = (
    "data spec: omitted or 'mnist5k' = the embedded 5,000 real MNIST digits; "
    "KIND:PATH with KIND in mnist, folder, celeba, afhq, oasis, nifti, dicom, npy, medmnist; "
    "or a bare PATH whose layout is detected"
)


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error style: one ``error:`` line and exit code 2 (the usage stays under --help)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A value such as "--window -1000,400" is not an option: argparse alone takes only "-1000" for a number.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def add_train_parser(sub) -> None:
    """``neurosql train``: data, output and run flags, then one flag per config field of every method."""
    train = sub.add_parser("train", help="train NeuroSQL (or a baseline) and write a run directory")
    train.add_argument("--method", choices=tuple(CONFIGS), default=None,
                       help="neurosql (default), or a baseline trained by the same engine and budget: vae, gan, ddpm")
    train.add_argument("--config", default=None, metavar="CONFIG_JSON",
                       help="re-run a recorded run: method, settings and data from its config.json (or run directory); "
                            "flags given beside it override them, and the new config.json records which")
    train.add_argument("--data", default=None, help=DATA_HELP)
    train.add_argument("--resolution", type=int, default=None, help="resize images to this square size (default: the layout's: 28 MNIST, 64 CelebA, 128 AFHQ/OASIS, else native)")
    train.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 = grayscale, 3 = RGB (default: the layout's)")
    train.add_argument("--limit", type=int, default=None, help="cap on training images, a seeded stratified choice (paper: ~2000)")
    train.add_argument("--volumes", action="store_true",
                       help="nifti: data: train on whole 3-D volumes (cropped to the head, resampled to --resolution³, "
                            "default 32³) instead of 2-D slices; samples are also written as samples.nii.gz")
    train.add_argument("--window", default=None, metavar="LO,HI",
                       help="folder, nifti, dicom: map stored values LO..HI to black..white, e.g. -1000,400 in HU for "
                            "lung CT (default: 8-bit / 255; 16-bit, float, NIfTI and DICOM by their 0.5 and 99.5 "
                            "percentiles, per image or volume)")
    train.add_argument("--pad-square", action="store_true",
                       help="folder, nifti, dicom: pad each image with black to a square instead of cropping its centre")
    train.add_argument("--folds", type=int, default=None, metavar="K",
                       help="k-fold cross-validation (App. B) instead of the 80/10/10 split, by subject for OASIS: "
                            "fold --fold is the test split, the next one the val split (folder, oasis, nifti, dicom, npy data)")
    train.add_argument("--fold", type=int, default=None, metavar="I", help="which fold is the test split, 0..K-1")
    train.add_argument("--out", help=f"run directory to write (default: {DEFAULT_OUT})")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run already in --out (only once the new run has written its first checkpoint)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue an interrupted run from its last checkpoint, with its own options and data "
                       "(only --device, --evaluate and a new total budget --epochs or --steps may be given)")
    train.add_argument("--preset", choices=tuple(PRESETS), default=None,
                       help="paper: the paper's MNIST schedule (120 epochs, batch 64, lr 2e-4, no warm-up, no weight "
                            "average, early stopping with patience 25); flags given beside it override it (default: the automatic budget)")
    train.add_argument("--logger", choices=LOGGERS, default=None,
                       help="also log each epoch's numbers, the time split and a sample grid every 5 epochs to "
                            "RUN/tensorboard (needs the tensorboard package)")
    train.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                       help="end with a light evaluation on the test split: metrics.json, report.md (default: on)")
    add_config_arguments(train, *CONFIGS.values(), owners={cls: name for name, cls in CONFIGS.items()})


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="neurosql", description="Generative models by quantile assignment: no encoder, no discriminator."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    add_train_parser(sub)
    sample = sub.add_parser("sample", help="draw images from a trained model")
    sample.add_argument("--checkpoint", required=True, help="run directory or model.pt")
    add_config_arguments(sample, SampleOptions)
    sample.add_argument("--out", default="samples.png",
                        help="file to write, by suffix: .png or .jpg/.jpeg = a grid (the images also go to the same "
                        "name .npy), .npy = the images (n, C, H, W) only; a folder (DIR/ or an existing directory) "
                        "= one PNG per image (one .nii.gz per volume) plus samples.npy")
    sample.add_argument("--device", default="auto", help=DEVICE_HELP)
    sample.add_argument("--label", default=None,
                        help="only images of this class (NeuroSQL trained on labelled data): prior draws whose "
                             "nearest training codes vote for it")

    encode = sub.add_parser("encode", help="write the codes of images (id, label, code) for other tools")
    encode.add_argument("--checkpoint", required=True, help="run directory (or model.pt) of a neurosql or vae run")
    encode.add_argument("--data", default=None, help="images to encode (default: the run's data); " + DATA_HELP)
    encode.add_argument("--split", default="all", help="split of --data to encode: train, val, test or all (default: all)")
    encode.add_argument("--out", default="codes.csv",
                        help="file to write, by suffix: .csv (id, label, source, z0..) or .npy (a structured array "
                             "with the same fields; codes under 'code'); training images get their stored codes")
    add_config_arguments(encode, EncodeOptions)
    encode.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    export = sub.add_parser("export", help="write a trained model's generator G(z) for other tools")
    export.add_argument("--checkpoint", required=True, help="run directory (or model.pt) of a neurosql, vae or gan run")
    export.add_argument("--format", required=True, help="torchscript, onnx (needs the onnx package) or safetensors")
    export.add_argument("--out", default=None, help="file to write (default: RUN/generator.pt, .onnx or .safetensors)")

    evaluate = sub.add_parser("evaluate", help="evaluate a trained model: metrics.json, report.md and pictures")
    evaluate.add_argument("--checkpoint", required=True, help="run directory written by 'neurosql train'")
    evaluate.add_argument("--data", default=None, help="real images to compare with (default: the run's data); " + DATA_HELP)
    evaluate.add_argument("--split", default="test", help="split of --data holding the real held-out images (default: test)")
    evaluate.add_argument("--out", default=None, help="folder for the report (default: RUN/eval)")
    add_config_arguments(evaluate, EvaluateOptions)
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)

    add_benchmark_parser(sub)
    return parser


# First what sees sample quality (pretrained VGG features, copies of training images), then the proxy metrics.
SUMMARY_KEYS = (*LEAD_KEYS, "pfid", "pfid_3d", "recon_ssim_3d", "kid", "nn1_accuracy", "nn1_fake", "precision",
                "recall", "density", "coverage", "ssim", "nearest_real_ssim", "recon_ssim", "lpips", "lpips_variant",
                "kid_vgg", "downstream_accuracy", "ceiling_accuracy")


# The App. E random features read chance or better above colour clouds (288 RGB photo patches: 1-NN 0.48 / 0.55,
# precision 1.00; VGG 1-NN 0.83 / 0.93), so beside a VGG twin these proxy lines say so.
PROXY_BLIND = ("nn1_accuracy", "nn1_fake", *PRDC_KEYS)


def print_metrics(metrics: dict) -> None:
    """The summary, led by the metrics that see sample quality, each VGG one beside its ceiling (G at the
    training codes), the memorisation check marked coarse on few held-out images and its ratio marked where
    only blur brings samples closer than real images (the 2-NN ratio); a warning when the
    test set is too small, when the VGG features tell even that ceiling from real images, when the samples
    are worse than that ceiling (the sampling gap), or when the memorisation check finds copies or samples
    unlike the data."""
    held_out = (metrics.get("n_memorisation") or (0, 0, NOTE_MIN_HELD_OUT))[2]
    for key in (k for k in SUMMARY_KEYS if metrics.get(k) is not None):
        value = metrics[key]
        marks = []
        if metrics.get("knn_note") and key.removesuffix("_vgg") in PRDC_KEYS:  # k-NN: coarse on few images
            marks.append("coarse: too few test images")
        if key in ("memorisation_ratio", "memorisation_ratio_2nn", "copy_fraction") and held_out < NOTE_MIN_HELD_OUT:
            marks.append(f"coarse: {held_out} held-out images; open nearest.png")  # e.g. a 3-D run's 15 volumes
        if key == "memorisation_ratio" and soft_not_copies(value, metrics.get("memorisation_ratio_2nn")):
            marks.append("closer through blur, not copies: see memorisation_ratio_2nn")
        if key in PROXY_BLIND and metrics.get(f"{key}_vgg") is not None:
            marks.append(f"proxy features, blind to mush: read {key}_vgg")
        if metrics.get(f"{key}_ceiling") is not None:
            marks.append(f"G's reconstructions of training images: {metrics[f'{key}_ceiling']:.2f}")
        mark = f" ({'; '.join(marks)})" if marks else ""
        print(f"  {key:<22} {value:.4f}{mark}" if isinstance(value, float) else f"  {key:<22} {value}")
    for note in ("gap_note", "knn_note", "ceiling_note", "memorisation_note"):
        if metrics.get(note):
            warnings.warn(metrics[note], stacklevel=1)


def cmd_train(args: argparse.Namespace) -> None:
    from .data import load_data, load_validation, parse_spec
    from .data.intensity import intensity_rule
    from .engine.distributed import init_from_environment
    from .loggers import check_logger
    from .run_lock import run_lock
    from .runs import check_new_run, check_trainable, new_run, read_config, train_run, write_config

    main_process = init_from_environment().is_main  # under torchrun, only rank 0 writes the run
    if args.logger:
        check_logger(args.logger)
    if args.resume is not None:
        return resume_training(args, main_process)
    recorded = read_config(args.config) if args.config else {"model": {}, "data": {}}
    method = args.method or recorded.get("method", "neurosql")
    given = given_values(args, *CONFIGS.values())
    config = merged_config(CONFIGS[method], method, recorded["model"], args.preset, given)  # read_config checked it
    data_args = {name: getattr(args, name) if getattr(args, name) is not None else recorded["data"].get(name)
                 for name in ("resolution", "channels", "limit")}
    spec = args.data if args.data is not None else recorded["data"].get("spec")
    options = {**(recorded["data"].get("options") or {}), **layout_options(args)}
    if data_args["limit"] is not None and data_args["limit"] < 2:
        raise NeuroSQLError(f"--limit must be >= 2, got {data_args['limit']}")
    out_text = DEFAULT_OUT if args.out is None else args.out
    out = check_new_run(out_text, args.overwrite) if main_process else Path(out_text)
    data = load_data(spec, "train", **data_args, seed=config.seed, progress=config.progress, **options)
    check_trainable(config, data.images, method)
    val = load_validation(data.source, len(data), config.val_fraction, resolution=data.images.shape[-1],
                          channels=data.images.shape[1], seed=config.seed, progress=config.progress, **options)
    val_images = None if val is None else val.images
    data_info = {"spec": data.source, "split": "train", "n": len(data), **data_args, "options": options,
                 "n_val": None if val is None else len(val),
                 "intensity": intensity_rule(parse_spec(data.source)[0], options.get("window"))}
    origin = None
    if args.config:  # what the command line set on top of the recorded run
        typed = {name: getattr(args, name) for name in ("method", "preset", "data", "resolution", "channels", "limit")
                 if getattr(args, name) is not None}
        origin = {"config": str(args.config), "overrides": {**given, **typed, **layout_options(args)}}
    model = method_class(method)(config)
    labels = {"labels": data.label_names()} if method == "neurosql" else {}  # kept with NeuroSQL's codes
    if not main_process:
        model.fit(data.images, val_images, checkpoint=out / "model.pt", **labels)
        return
    with run_lock(out):
        check_new_run(out_text, args.overwrite)  # again: another process may have written a run there meanwhile
        with new_run(out):
            write_config(out, method, config, data_info, origin)  # first, so that --resume finds the data
            start = time.perf_counter()
            train_run(model, data.images, val_images, out, checkpoint=True, logger=args.logger, affine=data.affine,
                      **labels)
            finish_training(model, out, data, args.evaluate, start)


def layout_options(args: argparse.Namespace) -> dict:
    """The data-layout options given on the command line (``--volumes``, ``--folds K --fold I``,
    ``--window LO,HI``, ``--pad-square``)."""
    from .data.intensity import check_window
    from .data.splits import check_folds

    if (args.folds is None) != (args.fold is None):
        raise NeuroSQLError("give --folds K and --fold I together (fold I of K is the test split)")
    options = {"volumes": True} if args.volumes else {}
    if args.window is not None:
        options["window"] = list(check_window(args.window))
    if args.pad_square:
        options["pad_square"] = True
    if args.folds is not None:
        options["folds"] = list(check_folds((args.folds, args.fold)))
    return options


def resume_training(args: argparse.Namespace, main_process: bool) -> None:
    """``train --resume RUN``: the run's own settings and data; flags that would change them are refused
    (a new total budget, --epochs or --steps, may be given)."""
    from .loggers import epoch_logger
    from .persistence import remove_temporaries
    from .run_lock import run_lock
    from .runs import RUN_OUTPUTS, check_run_dir, check_run_method, load_run_data, load_run_validation, write_run

    given = [name for name in given_values(args, *CONFIGS.values()) if name not in RESUME_FLAGS]
    given += [name for name in (*DATA_FLAGS, "method", "config", "preset") if getattr(args, name) is not None]
    given += ["overwrite"] * args.overwrite + ["volumes"] * args.volumes + ["pad_square"] * args.pad_square
    given += [name for name in ("folds", "fold", "window") if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise NeuroSQLError(
            f"--resume continues a run with its own settings and data, so {flags} cannot be given; "
            "drop them, or start a new run with --out (or --config RUN to re-run it with changes)"
        )
    out = check_run_dir(args.resume)
    with run_lock(out) if main_process else contextlib.nullcontext():
        model = load_model(out / "model.pt", device=getattr(args, "device", "auto"))  # read and checked once
        check_run_method(out, model.kind)
        data = load_run_data(out, "train")
        if main_process:
            remove_temporaries(out, RUN_OUTPUTS)  # left by a process killed while writing
        start = time.perf_counter()
        val = load_run_validation(out, data)
        with epoch_logger(args.logger if main_process else None, out) as callback:
            model = model.continue_training(
                out / "model.pt", data.images, None if val is None else val.images, epochs=getattr(args, "epochs", None),
                steps=getattr(args, "steps", None), progress=getattr(args, "progress", None), callback=callback,
            )
        if main_process:
            write_run(model, out, data.images, wall_time=time.perf_counter() - start, affine=data.affine)
            finish_training(model, out, data, args.evaluate, start)


def finish_training(model, out: Path, data, evaluate: bool, start: float) -> None:
    """After the run directory is written: the light evaluation (skipped with a warning when the data are too
    few) and a summary."""
    from .runs import load_run_data

    if evaluate:
        from .evaluation import evaluate_model, write_evaluation
        from .persistence import write_json

        try:  # e.g. a test split of a few images, or none: the model is fine, the metrics are not defined
            test = load_run_data(out, "test", progress=False)
            metrics = evaluate_model(model, test.images, real_train=data.images, seed=model.config.seed, light=True)
        except NeuroSQLError as exc:
            write_json(out / "metrics.json", {"skipped": str(exc)})
            warnings.warn(f"evaluation skipped, the model is saved: {exc}", stacklevel=1)
        else:
            write_evaluation(model, out, metrics, test.images, data.labels, seed=model.config.seed,
                             real_train=data.images)
            print_metrics(metrics)
            skipped = [v for k, v in metrics.items() if k.endswith("_reason") and v and k not in OPTIONAL_METRICS]
            if skipped:  # e.g. k-NN metrics on a test split of a few images
                warnings.warn(f"some metrics were skipped ({'; '.join(skipped)}); see metrics.json", stacklevel=1)
    last = model.log_.rows[-1]
    print(
        f"trained {model.epochs_run_} epochs on {len(data)} images ({model.n_parameters:,} parameters) "
        f"in {time.perf_counter() - start:.0f} s; train ℓ {last['train_loss']:.4f}; run written to {out}"
    )


def cmd_sample(args: argparse.Namespace) -> None:
    from .persistence import write_files
    from .report import grid_bytes
    from .runs import check_memory, check_writable, created_dir, run_affine, sample_files

    opts = SampleOptions.from_args(args)
    out = Path(args.out)
    # one file per image into DIR/ or an existing folder; a folder named like a file (s.npy/) is refused below
    folder = args.out.endswith(("/", os.sep)) or (out.is_dir() and out.suffix.lower() not in SAMPLE_SUFFIXES)
    if folder and out.exists() and not out.is_dir():
        raise NeuroSQLError(f"--out {args.out} names a folder but {out} is a file; choose another --out")
    if folder and (out / "samples.npy").exists():
        raise NeuroSQLError(f"{out} already holds samples (samples.npy); choose a new folder or remove them")
    if folder:
        check_writable(out)
    elif out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise NeuroSQLError(f"--out {out}: unknown suffix '{out.suffix}'; use .png, .jpg, .jpeg or .npy, or DIR/ for a folder")
    elif not out.parent.is_dir():
        raise NeuroSQLError(f"output folder {out.parent} does not exist; create it or choose another --out")
    model = load_model(args.checkpoint, device=args.device)
    if args.label is not None and not model.samples_by_label:
        raise NeuroSQLError(f"--label needs a NeuroSQL model trained on labelled data; a {model.kind} model keeps no "
                            "class labels, so drop --label or sample a NeuroSQL run")
    check_memory(8 * opts.num * int(np.prod(model.image_shape_)), f"{opts.num:,} images", "lower -n")
    images = model.sample(opts.num, seed=opts.seed, **({} if args.label is None else {"label": args.label}))
    if folder:
        files = sample_files(images, run_affine(args.checkpoint) if images.ndim == 5 else None)
        with created_dir(out):  # a folder made here is removed again if writing fails
            write_files({out / name: (lambda f, data=data: f.write(data)) for name, data in files.items()})
        print(f"wrote {opts.num} samples to {out}{os.sep} ({len(files) - 1} image files and samples.npy)")
        return
    files = {out.with_suffix(".npy"): lambda f: np.save(f, images.numpy())}
    if out.suffix.lower() != ".npy":
        picture = grid_bytes(images, out.suffix)
        files = {out: lambda f: f.write(picture), **files}
    written = write_files(files)  # all or none
    print(f"wrote {opts.num} samples to {' and '.join(map(str, written))}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_model, write_evaluation
    from .persistence import images_digest
    from .runs import check_memory, check_writable, created_dir, load_run_data, run_directory

    opts = EvaluateOptions.from_args(args)
    model = load_model(args.checkpoint, device=args.device)
    n_images = 2 * opts.num + opts.downstream * opts.n_synthetic  # generated and real, and the classifier's
    check_memory(8 * n_images * int(np.prod(model.image_shape_)), f"{n_images:,} images", "lower -n or --n-synthetic")
    run_dir = run_directory(args.checkpoint)
    out = Path(args.out or run_dir / "eval")
    check_writable(out)
    test = load_run_data(run_dir, args.split, spec=args.data)
    train = load_run_data(run_dir, "train", progress=False)
    digest = getattr(model, "data_digest_", None)
    if len(train) <= model.train_index_.max() or (digest is not None and images_digest(train.images) != digest):
        raise NeuroSQLError("the run's training data changed since training; restore the original data")
    if tuple(test.images.shape[1:]) != tuple(model.image_shape_):
        raise NeuroSQLError(
            f"--data images are {tuple(test.images.shape[1:])} but the model makes {tuple(model.image_shape_)}; "
            "use matching data"
        )
    labelled = train.labels is not None and test.labels is not None
    metrics = evaluate_model(
        model, test.images, train_labels=train.labels, real_train=train.images, test_labels=test.labels,
        n=opts.num, seed=opts.seed, downstream=opts.downstream and labelled, n_synthetic=opts.n_synthetic,
        classifier_epochs=opts.classifier_epochs, refine_steps=opts.refine_steps,
    )
    with created_dir(out):  # only now, and removed again if writing fails
        write_evaluation(model, out, metrics, test.images, train.labels, seed=opts.seed, real_train=train.images)
    print_metrics(metrics)
    print(f"report written to {out / 'report.md'}")


def cmd_encode(args: argparse.Namespace) -> None:
    from .encoding import CODE_SUFFIXES, check_has_codes, codes_table, encode_images, stored_code_rows, write_codes
    from .runs import load_run_data, run_directory

    out = Path(args.out)
    if out.suffix.lower() not in CODE_SUFFIXES or out.is_dir():
        raise NeuroSQLError(f"--out {out}: name a .csv or .npy file to write the codes to")
    if not out.parent.is_dir():
        raise NeuroSQLError(f"output folder {out.parent} does not exist; create it or choose another --out")
    opts = EncodeOptions.from_args(args)
    model = load_model(args.checkpoint, device=args.device)
    check_has_codes(model)
    run_dir = run_directory(args.checkpoint)
    data = load_run_data(run_dir, args.split, spec=args.data)
    if tuple(data.images.shape[1:]) != tuple(model.image_shape_):
        raise NeuroSQLError(f"--data images are {tuple(data.images.shape[1:])} but the model makes "
                            f"{tuple(model.image_shape_)}; use matching data")
    try:
        rows = stored_code_rows(model, load_run_data(run_dir, "train", progress=False).images, data.images)
    except NeuroSQLError as exc:  # the run's training data moved or changed: no image is known as trained on
        print(f"warning: every code is encoded, none looked up ({exc})", file=sys.stderr)
        rows = np.full(len(data), -1)
    codes = encode_images(model, data.images, rows, opts.refine_steps)
    ids = data.ids or [str(i) for i in range(len(data))]
    labels = data.label_names()
    labels = [""] * len(data) if labels is None else [str(v) for v in labels]
    write_codes(out, codes_table(codes, ids, labels, rows >= 0))
    print(f"wrote the codes of {len(data)} images to {out} ({int((rows >= 0).sum())} stored training codes, "
          f"{int((rows < 0).sum())} encoded)")


def cmd_export(args: argparse.Namespace) -> None:
    from .export import FORMATS, check_format, export_generator
    from .runs import run_directory

    check_format(args.format)
    out = Path(args.out) if args.out else run_directory(args.checkpoint) / f"generator{FORMATS[args.format]}"
    if out.is_dir():
        raise NeuroSQLError(f"--out {out} is a directory; name a file in it, e.g. {out / ('generator' + FORMATS[args.format])}")
    if not out.parent.is_dir():
        raise NeuroSQLError(f"folder {out.parent} does not exist; create it or choose another --out")
    model = load_model(args.checkpoint, device="cpu")
    export_generator(model, args.format, out)
    print(f"wrote the {model.kind} generator as {args.format} to {out}")


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "encode": cmd_encode, "export": cmd_export,
            "evaluate": cmd_evaluate, "benchmark": cmd_benchmark}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a parse error, already printed as one line (2)
        return exc.code
    try:
        with one_line_warnings():
            COMMANDS[args.command](args)
    except NeuroSQLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; lower --limit, --resolution, --width, --batch-size or -n", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
