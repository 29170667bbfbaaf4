"""Fuzzed input through the engine API (hypothesis).

Images of 1x1 up to a few hundred pixels, 2-D to 4-D, bool/uint8/uint16/int32/float32/
float64 with NaN/inf, constant or negative values, RGB/RGBA/n-channel, numpy or dask; prompts
empty, out of bounds, on the border, inverted or zero-area boxes, NaN points, wrong shapes,
thousands of points; labels of several dtypes and shapes.  Every call must either return a
valid result (right shapes and dtypes, only the new IDs written into labels) or raise one of
the documented :mod:`napari_sam2.engine.errors` types with a clear message.  Anything else
(IndexError, a numpy ValueError, silent garbage) fails the test.

The profile registered in ``tests/conftest.py`` makes every run draw the same examples.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from napari_sam2.engine import NapariSam2Error, PlaneSource, Segmenter  # noqa: E402
from napari_sam2.engine.prompts import make_objects  # noqa: E402

DTYPES = ("bool", "uint8", "uint16", "int32", "float32", "float64")
LAYOUTS = ("2d", "3d", "4d", "rgb", "rgba", "channels")
CONTENTS = ("blobs", "noise", "constant", "zeros", "extreme")
LABEL_DTYPES = ("int32", "int32", "uint8", "uint16", "int64", "uint32", "float32")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------------- images
def _content(rng, kind: str, shape, dtype: str, special: str) -> np.ndarray:
    if kind == "blobs":
        h, w = shape[-2:]
        rr, cc = np.mgrid[:h, :w]
        base = np.zeros((h, w))
        for _ in range(3):
            r, c, rad = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 3 + 1)
            base += (rr - r) ** 2 + (cc - c) ** 2 < rad**2
        x = np.broadcast_to(base, shape) + 0.1 * rng.random(shape)
    elif kind == "noise":
        x = rng.random(shape)
    elif kind == "constant":
        x = np.full(shape, rng.uniform(0, 1))
    elif kind == "zeros":
        x = np.zeros(shape)
    else:  # the whole range of the dtype
        x = rng.choice([0.0, 1.0], size=shape)
    if dtype == "bool":
        return x > 0.5
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        top = info.max if kind == "extreme" else min(info.max, 4095)
        bottom = info.min if (kind == "extreme" or special == "neg") else 0
        return (bottom + np.clip(x, 0, 1) * (top - bottom)).astype(dtype)
    x = x * (1e30 if kind == "extreme" else 1000.0)
    if special == "neg":
        x = x - 3000.0
    x = x.astype(dtype)
    if special in ("nan", "inf") and x.size:
        idx = rng.random(x.shape) < 0.2
        x[idx] = np.nan if special == "nan" else rng.choice([np.inf, -np.inf])
    if special == "allnan":
        x[...] = np.nan
    return x


@st.composite
def images(draw, max_side: int = 48, big: bool = True):
    """(array, set_image kwargs, plane shape, index shape)."""
    layout = draw(st.sampled_from(LAYOUTS))
    dtype = draw(st.sampled_from(DTYPES))
    side = st.integers(1, max_side)
    if big:
        side = st.one_of(side, side, side, st.integers(200, 320))
    h, w = draw(side), draw(side)
    if h * w > 320 * 64 and layout != "2d":  # big planes: one plane only, keeps it fast
        layout = "2d"
    special = draw(st.sampled_from(("none", "nan", "inf", "neg", "allnan")))
    if dtype.startswith("int") or dtype.startswith("uint"):
        special = special if special in ("none", "neg") else "none"
    elif dtype == "bool":
        special = "none"
    kind = draw(st.sampled_from(CONTENTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kwargs: dict = {}
    index_shape: tuple = ()
    if layout == "2d":
        shape = (h, w)
    elif layout in ("3d", "4d"):
        index_shape = tuple(draw(st.integers(1, 3)) for _ in range(1 if layout == "3d" else 2))
        shape = index_shape + (h, w)
    elif layout in ("rgb", "rgba"):
        shape = (h, w, 3 if layout == "rgb" else 4)
    else:
        n_ch = draw(st.integers(1, 4))
        shape = (n_ch, h, w)
        kwargs["channel_axis"] = 0
        kwargs["channel"] = draw(st.sampled_from(["mean", "max", "composite", 0, n_ch - 1]))
    if layout in ("rgb", "rgba"):
        data = np.stack([_content(rng, kind, (h, w), dtype, special) for _ in range(shape[2])], -1)
    else:
        data = _content(rng, kind, shape, dtype, special)
    if w in (3, 4) and layout not in ("rgb", "rgba"):
        kwargs["rgb"] = False  # napari's rule would call a last axis of 3 or 4 RGB(A)
    if draw(st.booleans()):
        da = pytest.importorskip("dask.array")
        data = da.from_array(data, chunks=tuple(max(1, s // 2) for s in data.shape))
    if draw(st.integers(0, 5)) == 0:
        lo, hi = draw(st.floats(-10, 5000)), draw(st.floats(-10, 5000))
        kwargs["contrast_limits"] = (lo, hi)
    return data, kwargs, (h, w), index_shape


# ------------------------------------------------------------------------ prompts
def _coord(n: int, bad: bool):
    """A coordinate along an axis of length n: inside, on the border (and when ``bad``:
    just outside, far outside, not finite)."""
    good = st.one_of(
        st.floats(-0.5, n - 0.5),
        st.floats(-0.5, n - 0.5),
        st.sampled_from([-0.5, 0.0, n - 1.0, n - 0.5]),
    )
    if not bad:
        return good
    return st.one_of(
        good,
        st.sampled_from([-0.51, n - 0.49]),
        st.floats(-1e6, 1e6),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    )


@st.composite
def prompts(draw, h: int, w: int):
    """Keyword arguments of ``predict``/``segment_into``: valid ones (inside or on the
    border, inverted or zero-area boxes, thousands of clicks) and, one time in three,
    invalid ones on purpose (outside, NaN, wrong shapes, bad labels, wrong-shape masks)."""
    bad = draw(st.integers(0, 2)) == 0
    out: dict = {}
    n_box = draw(st.sampled_from([0, 0, 1, 1, 2, 3]))
    n_pts = draw(st.sampled_from([0, 1, 1, 2, 3, 5, 2000]))
    if n_box > 1 and not bad:
        n_pts = 0  # with several boxes, points must lie inside one of them
    if n_pts == 2000:  # thousands of clicks
        rng = np.random.default_rng(draw(st.integers(0, 1000)))
        pts = np.stack([rng.uniform(-0.5, h - 0.5, n_pts), rng.uniform(-0.5, w - 0.5, n_pts)], 1)
        out["points"] = pts
        out["point_labels"] = np.r_[1, (rng.random(n_pts - 1) < 0.8)].astype(int)
    elif n_pts:
        pts = [(draw(_coord(h, bad)), draw(_coord(w, bad))) for _ in range(n_pts)]
        shape = draw(st.sampled_from(["ok", "ok", "flat", "three"])) if bad else "ok"
        if shape == "flat":
            pts = np.asarray(pts).ravel()
        elif shape == "three":
            pts = np.c_[np.asarray(pts), np.zeros(n_pts)]
        out["points"] = pts
        if bad:
            labs = st.sampled_from([1, 1, 0, 2, -1, 0.5, True])
            extra = draw(st.sampled_from([0, 0, 1]))
            out["point_labels"] = [draw(labs) for _ in range(n_pts + extra)]
        elif draw(st.booleans()):
            out["point_labels"] = [1] + [draw(st.sampled_from([0, 1])) for _ in range(n_pts - 1)]
    if n_box:
        boxes = [
            [
                draw(_coord(h, bad)),
                draw(_coord(w, bad)),
                draw(_coord(h, bad)),
                draw(_coord(w, bad)),
            ]
            for _ in range(n_box)
        ]
        if draw(st.integers(0, 4)) == 0:  # zero-area box
            boxes[0][2], boxes[0][3] = boxes[0][0], boxes[0][1]
        if bad and draw(st.integers(0, 3)) == 0:  # wrong shape
            boxes = np.asarray(boxes)[:, :3]
        out["boxes"] = boxes
    n_mask = draw(st.sampled_from([0, 0, 0, 1, 2]))
    if n_mask:
        rng = np.random.default_rng(draw(st.integers(0, 1000)))
        sizes = [(h, w), (h + 1, w), (w, h), (1, 1)] if bad else [(h, w)]
        mh, mw = draw(st.sampled_from(sizes))
        density = draw(st.sampled_from([0.0, 0.05, 0.5] if bad else [0.05, 0.5, 1.0]))
        masks = rng.random((n_mask, mh, mw)) < density
        if not bad:
            masks[:, mh // 2, mw // 2] = True
        out["masks"] = masks[0] if n_mask == 1 and draw(st.booleans()) else masks
    return out


# ------------------------------------------------------------------------- checks
OUTCOMES: Counter = Counter()  # (stage, valid?) of the running fuzz test's calls


def typed_or_valid(fn, stage: str | None = "predict"):
    """Run ``fn``: a documented error (with a message) returns None, anything else propagates.

    The outcome is counted per ``stage`` (shown by ``--hypothesis-show-statistics``, and in
    :data:`OUTCOMES` for :func:`valid_share`) unless ``stage`` is None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow in casts of 1e30
        try:
            out = fn()
        except NapariSam2Error as e:
            msg = str(e)
            assert len(msg) > 15, f"unclear message: {msg!r}"
            if stage:
                event(f"{stage}: typed error {type(e).__name__}")
                OUTCOMES[stage, False] += 1
            return None
    if stage:
        event(f"{stage}: valid result")
        OUTCOMES[stage, True] += 1
    return out


def valid_share(stage: str, at_least: float):
    """The fuzz test must also *succeed*: at least ``at_least`` of its ``stage`` calls over
    all examples return a valid result (a backend that rejects every input with a typed
    error would otherwise pass)."""

    def decorate(test):
        # not functools.wraps's __dict__ copy: pytest must see a plain test (with the
        # fixtures of ``test``) that runs all of hypothesis's examples once
        @functools.wraps(test, updated=())
        def run(*args, **kwargs):
            OUTCOMES.clear()
            test(*args, **kwargs)
            valid, typed = OUTCOMES[stage, True], OUTCOMES[stage, False]
            assert valid + typed > 0, f"no {stage} call was made"
            share = valid / (valid + typed)
            print(f"SHARE {test.__name__} {stage} {valid}/{valid + typed}")
            assert share >= at_least, (
                f"only {valid} of {valid + typed} {stage} calls gave a valid result "
                f"({share:.0%} < {at_least:.0%})"
            )

        run.__signature__ = inspect.signature(test)
        del run.__wrapped__
        for attr in dir(test):  # hypothesis's pytest plugin sees a @given test (statistics)
            if "hypothesis" in attr and not attr.startswith("__"):
                setattr(run, attr, getattr(test, attr))
        return run

    return decorate


def test_valid_share_fails_a_backend_that_rejects_everything():
    """Control: a fuzz test whose every call ends in a typed error fails :func:`valid_share`."""

    @valid_share("predict", 0.1)
    @settings(FUZZ, max_examples=5)
    @given(x=st.integers())
    def rejects_all(x):
        def fail():
            raise NapariSam2Error(f"this backend rejects every input, {x} included")

        assert typed_or_valid(fail) is None

    with pytest.raises(AssertionError, match=r"only 0 of \d+ predict calls gave a valid"):
        rejects_all()


def check_predictions(preds, prompt_kwargs, plane_shape):
    objects = typed_or_valid(lambda: make_objects(**prompt_kwargs), None)
    assert objects is not None, "predict accepted prompts that make_objects rejects"
    assert len(preds) == len(objects)
    for p in preds:
        k = p.candidates.shape[0]
        assert p.candidates.dtype == bool
        assert p.candidates.shape == (k, *plane_shape) and k in (1, 3)
        assert p.scores.shape == (k,) and np.all(np.isfinite(p.scores))
        assert np.all(np.diff(p.scores) <= 0), "candidates must be ordered by score"


def _plane_index(draw, index_shape):
    if draw(st.integers(0, 9)) == 0:  # a wrong index
        return draw(
            st.sampled_from(
                [
                    (),
                    (0, 0, 0),
                    (-1,) * len(index_shape),
                    (99,) * len(index_shape),
                    (1.5,) * len(index_shape),
                    (math.nan,) * len(index_shape),
                ]
            )
        )
    return tuple(draw(st.integers(0, n - 1)) for n in index_shape)


# -------------------------------------------------------------------------- tests
@valid_share("predict", 0.3)  # 60 % in the default profile
@FUZZ
@given(case=images(), data=st.data())
def test_fuzz_classical_predict(case, data):
    """Fuzzed images x fuzzed prompts through Segmenter.predict (classical backend): valid masks or a typed error."""
    image, kwargs, plane_shape, index_shape = case
    seg = Segmenter(backend="classical")
    if typed_or_valid(lambda: seg.set_image(image, **kwargs), "set_image") is None:
        return
    index = _plane_index(data.draw, index_shape)
    kw = data.draw(prompts(*plane_shape))
    preds = typed_or_valid(lambda: seg.predict(index, **kw))
    if preds is not None:
        check_predictions(preds, kw, plane_shape)


@valid_share("segment_into", 0.2)  # 39 %
@FUZZ
@given(case=images(max_side=40, big=False), data=st.data())
def test_fuzz_segment_into_labels(case, data):
    """Fuzzed images, prompts and labels arrays through segment_into: only new IDs written on the plane, or a typed error and labels unchanged."""
    image, kwargs, plane_shape, index_shape = case
    seg = Segmenter(backend="classical")
    if typed_or_valid(lambda: seg.set_image(image, **kwargs), "set_image") is None:
        return
    ldtype = data.draw(st.sampled_from(LABEL_DTYPES))
    shape = index_shape + plane_shape
    if data.draw(st.integers(0, 9)) == 0:
        shape = data.draw(st.sampled_from([plane_shape, shape + (1,), (shape[0] + 1, *shape[1:])]))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    top = data.draw(st.sampled_from([0, 0, 3, 3, 254, 255, 65535]))
    labels = (rng.random(shape) < 0.3) * rng.integers(0, top + 1, size=shape)
    labels = labels.astype(ldtype)
    before = labels.copy()
    index = _plane_index(data.draw, index_shape)
    kw = data.draw(prompts(*plane_shape))
    label_id = data.draw(st.sampled_from([None] * 10 + [1, 7, 0, -3, 2**40]))
    policy = data.draw(st.sampled_from(["keep"] * 4 + ["overwrite"] * 3 + ["bogus"]))
    replace = data.draw(st.booleans())
    ids = typed_or_valid(
        lambda: seg.segment_into(
            labels, index, label_id=label_id, policy=policy, replace=replace, **kw
        ),
        "segment_into",
    )
    assert labels.dtype == before.dtype and labels.shape == before.shape
    if ids is None:
        np.testing.assert_array_equal(labels, before, "a failed call changed the labels")
        return
    assert all(isinstance(i, int) and i > 0 for i in ids)
    if not replace:  # every returned ID is painted, under both policies
        assert all((labels == i).any() for i in ids), "returned an ID it did not write"
    changed = labels != before
    if label_id is None:
        start = int(before.max(initial=0)) + 1
        assert ids == list(range(start, start + len(ids)))
    else:
        assert set(ids) <= {label_id}
    if changed.any():
        lead = np.nonzero(changed)[: len(index_shape)]
        assert all((ax == i).all() for ax, i in zip(lead, index, strict=True)), (
            "wrote off the plane"
        )
        written = labels[changed]
        cleared = written == 0
        assert np.isin(written[~cleared], ids).all(), "wrote an ID it did not return"
        if cleared.any():  # only a refinement clears, and only its own pixels
            assert replace and np.all(before[changed][cleared] == label_id)
        if policy == "keep":
            old = before[changed]
            assert np.all((old == 0) | np.isin(old, ids)), "keep policy overwrote another object"


@valid_share("sam_image", 0.5)  # 100 %
@settings(FUZZ, max_examples=150)
@given(case=images())
def test_fuzz_plane_source(case):
    """Fuzzed images through PlaneSource: every plane becomes a finite float32 (H, W, 3) in [0, 1] with a stable key."""
    image, kwargs, plane_shape, index_shape = case
    src = typed_or_valid(lambda: PlaneSource(image, **kwargs), "PlaneSource")
    if src is None:
        return
    assert src.plane_shape == plane_shape and src.index_shape == index_shape
    for index in list(src.iter_indices())[:3]:
        sam = typed_or_valid(lambda index=index: src.sam_image(index), "sam_image")
        if sam is None:
            return
        assert sam.dtype == np.float32 and sam.shape == (*plane_shape, 3)
        assert np.all(np.isfinite(sam)) and sam.min() >= 0 and sam.max() <= 1
        assert src.plane_key(index) == src.plane_key(index)


@pytest.fixture(scope="module")
def sam2_fuzz_segmenter(sam2_random_checkpoint):
    """Real SAM 2.1 tiny, random weights, image_size 256 (own instance: the fuzz changes its
    image many times, no other module sees that)."""
    from conftest import TEST_IMAGE_SIZE

    return Segmenter(
        "tiny",
        checkpoint=sam2_random_checkpoint,
        backend="sam2",
        device="cpu",
        image_size=TEST_IMAGE_SIZE,
    )


@valid_share("predict", 0.3)  # 60 %
@settings(FUZZ, max_examples=20)
@given(case=images(max_side=40, big=False), data=st.data())
def test_fuzz_sam2_random_weights(sam2_fuzz_segmenter, case, data):
    """Fuzzed images and prompts through the real SAM 2.1 tiny architecture (random weights, image_size 256): valid masks or a typed error."""
    image, kwargs, plane_shape, index_shape = case
    seg = sam2_fuzz_segmenter
    if typed_or_valid(lambda: seg.set_image(image, **kwargs), "set_image") is None:
        return
    index = _plane_index(data.draw, index_shape)
    kw = data.draw(prompts(*plane_shape))
    preds = typed_or_valid(lambda: seg.predict(index, **kw))
    if preds is not None:
        check_predictions(preds, kw, plane_shape)
        for p in preds:
            assert p.low_res is not None and p.low_res.shape[0] == p.candidates.shape[0]


# ------------------------------------------------- fixed image, fuzzed prompt forms
@pytest.fixture(scope="module")
def stack_segmenter():
    """Classical backend on a 3 x 24 x 32 stack with a bright square on every plane."""
    image = np.zeros((3, 24, 32), np.uint16)
    image[:, 6:16, 10:22] = 1000
    return Segmenter(backend="classical").set_image(image)


@valid_share("predict", 0.25)  # 47 %
@FUZZ
@given(
    kw=prompts(24, 32),
    index=st.sampled_from([(0,), (1,), (2,), (0,), (1,), (2,), (3,), (-1,), (), (0.5,)]),
)
@example(kw={"points": np.array([[0.0, 0.0, 0.0]])}, index=(0,))  # (N, 3): was a reshape
@example(kw={"boxes": np.array([[0.0, 0.0, 0.0]])}, index=(0,))  # (B, 3) boxes: was a reshape
@example(kw={"points": [(10, 12), (3,)]}, index=(0,))  # ragged: was a numpy ValueError
@example(kw={"points": [(10, 12)], "point_labels": [0.5]}, index=(0,))  # was label 0
@example(kw={"boxes": [(-0.5, 3.0, 10.0, -0.5)]}, index=(1,))  # on the edge: was "outside"
@example(kw={"points": [(10, 12)]}, index=(math.nan,))  # was int(nan) ValueError
@example(kw={"points": [(10, 12)]}, index=((0,),))  # was a TypeError
def test_fuzz_prompt_forms(stack_segmenter, kw, index):
    """Fuzzed prompt forms (wrong shapes, ragged lists, non-integer labels, odd plane indices) on a fixed stack: valid masks or a typed error."""
    preds = typed_or_valid(lambda: stack_segmenter.predict(index, **kw))
    if preds is not None:
        check_predictions(preds, kw, (24, 32))


ODD_IMAGES = {
    "0-d": np.zeros(()),
    "1-d": np.zeros(5),
    "empty 0x5": np.zeros((0, 5)),
    "empty stack": np.zeros((0, 6, 6)),
    "complex": np.zeros((4, 4), complex),
    "text": np.array([["a", "b"], ["c", "d"]]),
    "objects": np.array([[1, None], [2, 3]], object),
    "ragged list": [[1, 2], [3]],
    "nested list": [[1, 2, 3], [4, 5, 6]],
    "float16": np.linspace(0, 1, 16, dtype=np.float16).reshape(4, 4),
    "uint64 max": np.full((4, 4), 2**64 - 1, np.uint64),
    "int8 min": np.full((4, 4), -128, np.int8),
    "5-D": np.zeros((2, 1, 2, 5, 6)),
    "2x2 RGB": np.ones((2, 2, 3)),
}


@valid_share("set_image", 0.2)  # 43 %
@FUZZ
@given(name=st.sampled_from(sorted(ODD_IMAGES)), rc=st.tuples(st.floats(-1, 6), st.floats(-1, 6)))
@example(name="ragged list", rc=(0.0, 0.0))  # was a numpy ValueError
@example(name="empty 0x5", rc=(0.0, 0.0))  # was accepted, then failed on every prompt
def test_fuzz_odd_images(name, rc):
    """Odd image objects (0-D/1-D, empty, complex, text, ragged lists, float16, uint64, 5-D): set_image and a click give valid masks or a typed error."""
    seg = Segmenter(backend="classical")
    if typed_or_valid(lambda: seg.set_image(ODD_IMAGES[name]), "set_image") is None:
        return
    index = (0,) * len(seg.source.index_shape)
    preds = typed_or_valid(lambda: seg.predict(index, points=[rc]))
    if preds is not None:
        check_predictions(preds, {"points": [rc]}, seg.source.plane_shape)
