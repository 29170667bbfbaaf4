"""A synthetic time-lapse of textured cells that move, divide and leave the field (tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

RADIUS = 11  # cells of diameter 22 px
SHAPE = (12, 320, 320)


@dataclass
class Cell:
    cid: int
    pos: tuple[float, float]
    vel: tuple[float, float]  # px per frame
    divide_at: int | None = None
    texture: np.ndarray = field(default=None, repr=False)


def _texture(rng, r: int) -> np.ndarray:
    t = ndi.gaussian_filter(rng.normal(size=(2 * r + 7, 2 * r + 7)), 1.5)
    return 45 * t / (np.abs(t).max() + 1e-9)


def _paint(img, lab, centre, r, tex, lid) -> None:
    h, w = img.shape
    cr, cc = centre
    rr, cc_ = np.ogrid[:h, :w]
    disc = (rr - cr) ** 2 + (cc_ - cc) ** 2 <= r**2
    img[disc] = 0
    ys, xs = np.nonzero(disc)
    half = tex.shape[0] // 2
    ty = np.clip((ys - cr).round().astype(int) + half, 0, tex.shape[0] - 1)
    tx = np.clip((xs - cc).round().astype(int) + half, 0, tex.shape[1] - 1)
    img[ys, xs] = 165 + tex[ty, tx]
    lab[disc] = lid


def moving_cells(seed: int = 0):
    """(movie uint8 (T, H, W), truth int32 (T, H, W), facts dict).

    Five cells moving 0.3-0.8 of their diameter per frame in separate lanes: cell 4 leaves
    the field on the right, cell 5 divides into cells 6 and 7 at ``facts["division"]``.
    """
    rng = np.random.default_rng(seed)
    d = 2 * RADIUS
    cells = [
        Cell(1, (40, 30), (0.0, 0.5 * d)),
        Cell(2, (115, 290), (0.0, -0.35 * d)),
        Cell(3, (200, 30), (-0.15 * d, 0.6 * d)),
        Cell(4, (270, 150), (0.0, 0.8 * d)),
        Cell(5, (115, 40), (0.0, 0.4 * d), divide_at=6),
    ]
    for c in cells:
        c.texture = _texture(rng, RADIUS)
    t_n, h, w = SHAPE
    movie = np.zeros(SHAPE, np.float32)
    truth = np.zeros(SHAPE, np.int32)
    daughters = (_texture(rng, RADIUS), _texture(rng, RADIUS))
    for t in range(t_n):
        img = np.full((h, w), 40.0, np.float32)
        lab = truth[t]
        for c in cells:
            jitter = rng.uniform(-1, 1, 2)
            centre = np.add(c.pos, np.multiply(c.vel, t)) + jitter
            if c.divide_at is not None and t >= c.divide_at:
                gap = RADIUS + 2 + 2 * (t - c.divide_at)
                r2 = int(round(RADIUS * 0.75))
                for k, sign in enumerate((-1, 1)):
                    _paint(img, lab, centre + [sign * gap, 0], r2, daughters[k], 6 + k)
            else:
                _paint(img, lab, centre, RADIUS, c.texture, c.cid)
        img += rng.normal(0, 8, (h, w))
        movie[t] = ndi.gaussian_filter(img, 0.7)
    facts = {"division": 6, "dividing": 5, "exiting": 4, "diameter": d}
    facts["exit_frame"] = next(
        t for t in range(t_n) if (truth[t] == 4).sum() < 0.5 * (truth[0] == 4).sum()
    )
    return np.clip(movie, 0, 255).astype(np.uint8), truth, facts
