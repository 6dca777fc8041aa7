"""Throughput of crop() and corrupt() on 128² images, with same-run references.

Run: ``python benchmarks/bench_corrupt.py [--seconds 1.0] [--quick]``. Prints rates and
ratios; no asserts. References: a 128² complex FFT (the floor of any FFT-based
alternative) and scipy's bilinear ``affine_transform`` on the same geometry (the
cheapest interpolating crop). Each rate is timed over ``--seconds`` (``--quick``: 0.2 s
instead of 1 s).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from scipy import fft, ndimage

from hpcbench.simulate.corrupt import CorruptionParams, corrupt, distortion_border
from hpcbench.simulate.crop import CropGeometry, crop, prepare
from hpcbench.simulate.periodic import PeriodicImage

SHAPE = (128, 128)
PIXEL = 0.1


def rate(func: Callable[[int], object], seconds: float = 1.0) -> float:
    """Calls per second of ``func(i)`` over about ``seconds``."""
    func(0)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        func(count)
        count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="per rate (1.0; 0.2)")
    parser.add_argument("--quick", action="store_true", help="0.2 s per rate")
    args = parser.parse_args()
    seconds = args.seconds or (0.2 if args.quick else 1.0)
    rng = np.random.default_rng(0)
    # a 40 x 35 Å cell at 0.05 Å (about 8 x 5 MX2 orthogonal cells)
    cell = PeriodicImage(
        ndimage.gaussian_filter(rng.random((700, 800)), 4.0, mode="wrap"), (40.0, 35.0)
    )
    prepared = prepare(cell)
    geometries = [
        CropGeometry(
            float(rng.uniform(0, 360)),
            (float(rng.uniform(0, 40)), float(rng.uniform(0, 35))),
            SHAPE,
            PIXEL,
        )
        for _ in range(64)
    ]
    image = np.asarray(rng.random(SHAPE) + 0.5, np.float32)

    fft_rate = rate(lambda i: fft.fft2(image), seconds)
    crop_rate = rate(lambda i: crop(prepared, geometries[i % 64]), seconds)
    dx, dy = cell.sampling

    def bilinear(i: int) -> object:
        g = geometries[i % 64]
        t = np.radians(g.rotation)
        m = np.array(
            [
                [np.cos(t) * PIXEL / dy, np.sin(t) * PIXEL / dy],
                [-np.sin(t) * PIXEL / dx, np.cos(t) * PIXEL / dx],
            ]
        )
        return ndimage.affine_transform(
            cell.array,
            m,
            offset=(g.offset[1] / dy, g.offset[0] / dx),
            output_shape=SHAPE,
            order=1,
            mode="grid-wrap",
        )

    def scipy_cubic(i: int) -> object:
        g = geometries[i % 64]
        t = np.radians(g.rotation)
        m = np.array(
            [
                [np.cos(t) * PIXEL / dy, np.sin(t) * PIXEL / dy],
                [-np.sin(t) * PIXEL / dx, np.cos(t) * PIXEL / dx],
            ]
        )
        return ndimage.affine_transform(
            prepared.coefficients,
            m,
            offset=(g.offset[1] / dy, g.offset[0] / dx),
            output_shape=SHAPE,
            order=3,
            mode="grid-wrap",
            prefilter=False,
        )

    bilinear_rate = rate(bilinear, seconds)
    scipy_rate = rate(scipy_cubic, seconds)
    prepare_rate = rate(lambda i: prepare(cell), seconds / 2)
    print(f"reference fft2 128²          {fft_rate:9.0f} /s")
    print(f"reference bilinear crop      {bilinear_rate:9.0f} /s")
    print(f"reference scipy cubic crop   {scipy_rate:9.0f} /s")
    print(f"prepare (800x700 cell)       {prepare_rate:9.1f} /s")
    print(
        f"crop (cubic, prepared)       {crop_rate:9.0f} /s  = "
        f"{crop_rate / scipy_rate:.2f} x scipy cubic, "
        f"{crop_rate / bilinear_rate:.2f} x bilinear, {crop_rate / fft_rate:.3f} x fft2"
    )

    cases = {
        "dose only": CorruptionParams(dose=1e4),
        "dose + read + blur": CorruptionParams(dose=1e4, read_noise=0.05, blur=0.05),
        "all effects": CorruptionParams(
            dose=1e4,
            read_noise=0.05,
            blur=0.05,
            jitter=0.03,
            drift=0.5,
            background=0.3,
            background_scale=20.0,
            contrast=1.1,
            brightness=0.05,
        ),
    }
    for name, params in cases.items():
        border = distortion_border(params, pixel_size=PIXEL)
        padded = np.pad(image, border, mode="reflect")
        r = rate(
            lambda i, p=params, b=border, x=padded: corrupt(
                x, p, pixel_size=PIXEL, seed=i, border=b
            ),
            seconds,
        )
        print(f"corrupt {name:<20} {r:9.0f} /s  = {r / fft_rate:.3f} x fft2")


if __name__ == "__main__":
    main()
