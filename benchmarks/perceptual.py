"""Time of the pretrained perceptual metrics on CPU: 2,048 embedded MNIST digits at 28 px.

Times VGG features (the input of fd_vgg, kid_vgg and the _vgg PRDC) for 2,048
images, FD/KID/PRDC on those features (1,024 against 1,024), and ST-LPIPS over
1,024 pairs (2,048 images). Needs the [metrics] extra.

    python -m benchmarks.perceptual   # writes benchmarks/perceptual.{json,md}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from neurosql.metrics import (
    VGGFeatureNet, extract_features, fid_from_features, kid, load_stlpips, lpips_distance, prdc,
)
from neurosql.runs import environment_info

HERE = Path(__file__).resolve().parent
N_IMAGES = 2048


def digits(n: int) -> torch.Tensor:
    """The first n of the 5,000 real digits embedded in the package, (n, 1, 28, 28) in [0, 1]."""
    from neurosql.data import load_data

    return load_data("mnist5k", "all", progress=False).images[:n]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(2)
    images = digits(N_IMAGES)
    net, load_s = timed(load_stlpips)
    features, features_s = timed(lambda: extract_features(VGGFeatureNet(net), images))  # (2048, 512)
    half = N_IMAGES // 2
    a, b = features[:half], features[half:]
    _, distribution_s = timed(lambda: (fid_from_features(a, b), kid(a, b), prdc(a, b)))
    _, lpips_s = timed(lambda: lpips_distance(net, images[:half], images[half:]))
    rows = [
        ("load the ST-LPIPS weight file", load_s),
        (f"VGG features of {N_IMAGES} images", features_s),
        (f"FD + KID (100 subsets) + PRDC on {half} vs {half} features", distribution_s),
        (f"ST-LPIPS over {half} pairs ({N_IMAGES} images)", lpips_s),
    ]
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_info("cpu"),
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],  # the machine is shared: other jobs slow these timings
        "seconds": dict(rows),
        "ms_per_image_features": 1000 * features_s / N_IMAGES,
    }
    (HERE / "perceptual.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    env = result["environment"]
    lines = [f"Measured {result['created']} on {env['processor']}, {result['threads']} threads, "
             f"torch {env['torch']}, load average {result['load_average_1min']:.1f} on "
             f"{env['cpu_count']} cores; 28 px digits upsampled to 64 px.", "",
             "| step | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in rows]
    (HERE / "perceptual.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
