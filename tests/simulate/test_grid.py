from __future__ import annotations

import pytest

from hpcbench.simulate._grid import fft_size, grid_shape


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1), (2, 2), (11, 12), (13, 14), (97, 98), (461, 480), (532, 540), (1021, 1024)],
)
def test_fft_size_known_values(n: int, expected: int) -> None:
    assert fft_size(n) == expected


def test_fft_size_is_smallest_smooth_at_least_n() -> None:
    def smooth(m: int) -> bool:
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 600):
        m = fft_size(n)
        assert m >= n and smooth(m)
        assert not any(smooth(k) for k in range(n, m))


def test_fft_size_multiple_of() -> None:
    assert fft_size(461, multiple_of=2) == 480
    assert fft_size(97, multiple_of=4) == 100
    assert fft_size(97, multiple_of=3) == 105
    with pytest.raises(ValueError, match="smooth"):
        fft_size(100, multiple_of=11)
    with pytest.raises(ValueError, match=">= 1"):
        fft_size(0)


def test_grid_shape_rounds_up_to_finer_sampling() -> None:
    # 53.2 / 0.1 = 532 -> 540 points, 46.1 / 0.1 = 461 -> 480 (sampling 0.0985, 0.0960 Å)
    assert grid_shape((53.2, 46.1), 0.1) == (540, 480)
    # exact multiples are not bumped by floating-point noise: 10.0 / 0.1 -> 100
    assert grid_shape((10.0, 3.0), 0.1) == (100, 30)
    nx, ny = grid_shape((26.24, 22.72), 0.05)
    assert 26.24 / nx <= 0.05 and 22.72 / ny <= 0.05
    with pytest.raises(ValueError, match="sampling"):
        grid_shape((1.0, 1.0), 0.0)
