"""Cartoon faces drawn procedurally from a seed, with the ground truth that real photographs lack.

CelebA (gigabytes behind a rate-limited download) is out of reach in CI and on a CPU laptop; these
faces give the same attribute-editing task (the same CelebA attribute names, so ``FaceImages.labels("Eye")``
works on both) and render thousands of images per second on a CPU. Because we drew them we also
know what a photograph never tells: who each face is, and which pixels each attribute occupies.

Factors of one face
-------------------
* four binary **attributes** (:data:`ATTRIBUTES`): ``Eyeglasses`` (dark rims, bridge and temples
  round the eyes), ``Smiling`` (a wide open smile showing teeth, instead of a flat mouth),
  ``Facial_Hair`` (a beard over jaw and chin plus a mustache, a darker shade of the hair) and
  ``Wearing_Hat`` (a red beanie over the top of the head and hair).
* seven **identity** factors (:data:`IDENTITY_FACTORS`), what an attribute edit must leave alone:
  ``face_width``, ``face_length``, ``skin_tone`` (light to dark), ``hair_tone`` (blond to black),
  ``offset_x`` / ``offset_y`` (the whole person moves by up to 8% of the image each way), all
  continuous in [0, 1], and ``hair_style``, an integer ``0..NUM_HAIR_STYLES-1`` stored as a float
  (short, long with a centre parting, bob with a side fringe, curly).

Correlated attributes
---------------------
Attributes of real faces are correlated (in CelebA facial hair occurs almost only on faces labelled
Male), which is what makes an edit of one attribute drag another along. :func:`sample_factors` reproduces this
on purpose: ``correlation`` is the Pearson (phi) coefficient between two chosen attributes, drawn
from the 2x2 joint table with the requested marginal rates and that phi, so it holds exactly in
expectation. The identity factors are always independent of the attributes.

Ground-truth regions
--------------------
:func:`attribute_regions` marks, for each image and attribute, the pixels that change when only
that attribute is switched on or off. An edit of attribute ``j`` that touches pixels outside
region ``j`` has changed something else: this is how a chapter scores the locality of an edit.
The hat covers hair, so its region includes the hair under it.

Rendering
---------
Each feature is a signed distance (negative inside) in face coordinates, turned into coverage by a
one-pixel linear ramp (anti-aliased edges with compact support, so a region ends where the feature
ends) and painted over the layers below, back to front. Everything is vectorised over the batch:
faces that share a hair style and attributes are drawn together, so the only Python loops are over
those 64 groups, chunks of images and the layers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_face_image_size, check_tensor
from .faces import FaceImages

ATTRIBUTES = ("Eyeglasses", "Smiling", "Facial_Hair", "Wearing_Hat")
IDENTITY_FACTORS = ("face_width", "face_length", "skin_tone", "hair_tone", "offset_x", "offset_y", "hair_style")
HAIR_STYLES = ("short", "long", "bob", "curly")
NUM_HAIR_STYLES = len(HAIR_STYLES)
CATEGORICAL_FACTORS = {"hair_style": NUM_HAIR_STYLES}
DEFAULT_RATE = 0.5
REGION_THRESHOLD = 1.0 / 255.0  # one step of an 8-bit image: smaller changes are invisible

_STYLE = IDENTITY_FACTORS.index("hair_style")
_SCALE = 1.1  # how large a face is drawn in the image
_CHUNK_PIXELS = 1 << 20  # images per chunk = this / S^2: temporaries of a few MB

# colours (RGB in [0, 1]); skin and hair interpolate between the keys by their tone factor
_BACKGROUND_TOP = (0.86, 0.90, 0.95)
_BACKGROUND_BOTTOM = (0.74, 0.80, 0.88)
_SKIN_KEYS = ((1.00, 0.86, 0.74), (0.86, 0.64, 0.47), (0.42, 0.27, 0.18))
_HAIR_KEYS = ((0.96, 0.83, 0.44), (0.56, 0.32, 0.14), (0.10, 0.08, 0.07))
_SHIRT = (0.20, 0.47, 0.44)
_EYE_WHITE = (0.98, 0.98, 0.98)
_PUPIL = (0.12, 0.08, 0.07)
_LIPS = (0.62, 0.22, 0.24)
_MOUTH_INSIDE = (0.40, 0.06, 0.10)
_TEETH = (1.0, 1.0, 1.0)
_FRAME = (0.07, 0.07, 0.09)
_LENS = (0.80, 0.92, 1.00)
_HAT = (0.82, 0.16, 0.18)
_HAT_BAND = (0.60, 0.09, 0.12)


# --------------------------------------------------------------------------- sampling factors


def sample_factors(
    num: int,
    *,
    seed: int,
    attribute_rates: dict[str, float] | None = None,
    correlation: float = 0.0,
    correlated: tuple[str, str] = ("Facial_Hair", "Wearing_Hat"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(attributes, identity)``: ``(num, 4)`` long 0/1 and ``(num, 7)`` float32, a pure function of ``seed``.

    Each attribute is 1 with its rate in ``attribute_rates`` (default 0.5); the two ``correlated``
    attributes have Pearson (phi) correlation ``correlation``, the others are independent.
    Continuous identity factors are uniform on [0, 1], ``hair_style`` uniform over the styles.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"num must be a non-negative int, got {num!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    rates = _check_rates(attribute_rates)
    first, second = _check_correlated(correlated)
    joint = _joint_table(rates[first], rates[second], correlation, (ATTRIBUTES[first], ATTRIBUTES[second]))

    # one draw of a fixed size whatever the rates: a seed gives the same faces for any rates or correlation
    gen = torch.Generator().manual_seed(int(seed))
    u_identity = torch.rand(num, len(IDENTITY_FACTORS), generator=gen)
    u_attributes = torch.rand(num, len(ATTRIBUTES), generator=gen, dtype=torch.float64)

    attributes = (u_attributes < torch.tensor(rates, dtype=torch.float64)).long()
    # the correlated pair from its 2x2 joint: cells (0,0), (0,1), (1,0), (1,1) by one uniform
    edges = torch.tensor(joint, dtype=torch.float64).cumsum(0)[:-1]
    cell = torch.searchsorted(edges, u_attributes[:, first].contiguous(), right=True)
    attributes[:, first], attributes[:, second] = cell // 2, cell % 2

    identity = u_identity.clone()
    identity[:, _STYLE] = (u_identity[:, _STYLE] * NUM_HAIR_STYLES).floor().clamp(max=NUM_HAIR_STYLES - 1)
    return attributes, identity


def _check_rates(attribute_rates: dict[str, float] | None) -> list[float]:
    rates = dict.fromkeys(ATTRIBUTES, DEFAULT_RATE)
    for name, rate in (attribute_rates or {}).items():
        if name not in rates:
            raise ValueError(
                f"unknown attribute {name!r} in attribute_rates; the attributes are {', '.join(ATTRIBUTES)}"
            )
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"the rate of {name} must be a number in [0, 1], got {rate!r}")
        rates[name] = float(rate)
    return list(rates.values())


def _check_correlated(correlated: tuple[str, str]) -> tuple[int, int]:
    if isinstance(correlated, str) or len(tuple(correlated)) != 2:
        raise ValueError(
            f"correlated must be a pair of attribute names such as ('Facial_Hair', 'Wearing_Hat'), got {correlated!r}"
        )
    unknown = [name for name in correlated if name not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attribute {unknown[0]!r} in correlated; the attributes are {', '.join(ATTRIBUTES)}")
    if correlated[0] == correlated[1]:
        raise ValueError(f"correlated must name two different attributes, got {correlated!r}")
    return ATTRIBUTES.index(correlated[0]), ATTRIBUTES.index(correlated[1])


def _joint_table(p: float, q: float, phi: float, names: tuple[str, str]) -> list[float]:
    """P(00), P(01), P(10), P(11) of two binary variables with rates p, q and phi coefficient ``phi``."""
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not -1.0 < phi < 1.0:
        raise ValueError(f"correlation must be a number strictly between -1 and 1, got {phi!r}")
    if phi == 0.0:
        return [(1 - p) * (1 - q), (1 - p) * q, p * (1 - q), p * q]
    spread = (p * (1 - p) * q * (1 - q)) ** 0.5
    if spread == 0.0:
        raise ValueError(
            f"correlation={phi} needs both {names[0]} and {names[1]} to vary, but their rates are {p} and {q}"
        )
    p11 = p * q + phi * spread
    low, high = max(0.0, p + q - 1), min(p, q)  # P(11) of any joint table with these marginals
    if not low - 1e-12 <= p11 <= high + 1e-12:
        reachable = sorted(((low - p * q) / spread, (high - p * q) / spread))
        raise ValueError(
            f"correlation={phi} is impossible for rates {p} ({names[0]}) and {q} ({names[1]}); "
            f"with these rates it must lie in [{reachable[0]:.3f}, {reachable[1]:.3f}]"
        )
    p11 = min(max(p11, low), high)
    return [1 - p - q + p11, q - p11, p - p11, p11]


# --------------------------------------------------------------------------- geometry helpers


class _Face(NamedTuple):
    """Per-image geometry: pixel coordinates relative to the face centre, head size, colours.

    ``x`` is ``(N, 1, S)`` and ``y`` is ``(N, S, 1)``, in face units (the image spans [-1, 1]
    divided by ``_SCALE``; y points down); they broadcast to ``(N, S, S)`` only where a shape
    combines them, which keeps most arithmetic one-dimensional.
    """

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor  # (N, 1, 1) half-width of the head
    b: torch.Tensor  # (N, 1, 1) half-length of the head
    skin: torch.Tensor  # (N, 3)
    hair: torch.Tensor  # (N, 3)
    px: float  # the width of one pixel in face units: the anti-aliasing ramp


def _coverage(sd: torch.Tensor, px: float) -> torch.Tensor:
    """Fraction of a pixel inside a shape, from its signed distance: a ramp one pixel wide.

    Unlike a sigmoid it is exactly 0 half a pixel outside the edge, so a feature's region ends there.
    """
    return (sd * (-1.0 / px)).add_(0.5).clamp_(0.0, 1.0)


def _ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an ellipse (exact for a circle, close enough for edges)."""
    k = (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2).sqrt_()
    return k.sub_(1.0).mul_(torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)))


def _band(y, centre, half_thickness):
    """Signed distance to a horizontal stroke along the curve ``centre`` (a function of x)."""
    return (y - centre).abs() - half_thickness


def _rounded_box(x, y, cx, cy, hx, hy, r):
    qx, qy = (x - cx).abs() - hx + r, (y - cy).abs() - hy + r
    outside = (qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2).sqrt()
    return outside + torch.maximum(qx, qy).clamp(max=0) - r


def _paint(canvas: torch.Tensor, alpha: torch.Tensor, colour) -> None:
    """Lay ``colour`` (one RGB or one per image) over ``canvas`` where ``alpha`` (N, S, S) covers it."""
    colour = torch.as_tensor(colour, dtype=canvas.dtype, device=canvas.device).reshape(-1, 3, 1, 1)
    canvas.lerp_(colour.expand_as(canvas), alpha.unsqueeze(1))


# --------------------------------------------------------------------------- layers, back to front


def _draw_background(canvas: torch.Tensor, face: _Face) -> None:
    # a fixed soft vertical gradient: the same for every image, so it carries no information
    size = canvas.shape[-1]
    t = torch.linspace(0, 1, size, device=canvas.device).view(1, 1, size, 1)
    top = torch.tensor(_BACKGROUND_TOP, device=canvas.device).view(1, 3, 1, 1)
    bottom = torch.tensor(_BACKGROUND_BOTTOM, device=canvas.device).view(1, 3, 1, 1)
    canvas.copy_((top + (bottom - top) * t).expand_as(canvas))


def _hair_back_short(x, y, a, b):
    # a close crop: a cap just outside the skull, above the ears
    return torch.maximum(_ellipse(x, y, 0, -0.10 * b, 1.07 * a, 0.99 * b), y + 0.05 * b)


def _hair_back_long(x, y, a, b):
    # falls straight down past the jaw to the shoulders
    top = _ellipse(x, y, 0, -0.08 * b, 1.16 * a, 1.0 * b)
    fall = _rounded_box(x, y, 0, 0.50 * b, 1.16 * a, 0.75 * b, 0.25 * a)
    return torch.minimum(top, fall)


def _hair_back_bob(x, y, a, b):
    # rounded volume cut straight at the jaw line
    return torch.maximum(_ellipse(x, y, 0, -0.06 * b, 1.2 * a, 1.04 * b), y - 0.55 * b)


def _hair_back_curly(x, y, a, b):
    # a bumpy halo: the ellipse's radius waves with the angle round the head
    cy = -0.12 * b
    dx, dy = x / (1.2 * a), (y - cy) / (1.04 * b)
    k = (dx**2 + dy**2).sqrt()
    wave = 1 + 0.07 * torch.cos(11 * torch.atan2(dy, dx))
    return torch.maximum((k / wave - 1) * b, y - 0.3 * b)


_HAIR_BACK = (_hair_back_short, _hair_back_long, _hair_back_bob, _hair_back_curly)


def _hairline_short(x, a, b):
    return -0.56 * b + 0.35 * b * (x / a) ** 2  # lower at the temples


def _hairline_long(x, a, b):
    return -0.74 * b + 0.8 * b * (x / a) ** 2  # a centre parting: curtains down the sides


def _hairline_bob(x, a, b):
    return -0.52 * b - 0.22 * b * (x / a) + 0.3 * b * (x / a) ** 2  # a fringe swept to one side


def _hairline_curly(x, a, b):
    return -0.52 * b + 0.25 * b * (x / a) ** 2 + 0.045 * torch.cos(x * (2 * torch.pi / 0.2))  # ringlets


_HAIRLINE = (_hairline_short, _hairline_long, _hairline_bob, _hairline_curly)


def _draw_hair_back(canvas: torch.Tensor, face: _Face, style: int) -> None:
    shape = _HAIR_BACK[style](face.x, face.y, face.a, face.b)
    _paint(canvas, _coverage(shape, face.px), face.hair * 0.85)  # a shade darker: it is behind the head


def _draw_neck_and_shirt(canvas: torch.Tensor, face: _Face) -> None:
    x, y, a, b = face.x, face.y, face.a, face.b
    neck = torch.maximum(x.abs() - 0.36 * a, -y)
    _paint(canvas, _coverage(neck, face.px), face.skin * 0.82)
    shirt = _ellipse(x, y, 0, b + 0.55, 0.9, 0.45)
    _paint(canvas, _coverage(shirt, face.px), _SHIRT)


def _draw_head(canvas: torch.Tensor, face: _Face) -> None:
    x, y, a, b = face.x, face.y, face.a, face.b
    ears = _ellipse(x.abs(), y, 0.97 * a, 0.02 * b, 0.075, 0.12)  # |x| draws both sides at once
    _paint(canvas, _coverage(ears, face.px), face.skin * 0.9)
    _paint(canvas, _coverage(_ellipse(x, y, 0, 0, a, b), face.px), face.skin)


def _draw_hair_front(canvas: torch.Tensor, face: _Face, style: int) -> None:
    # the hair over the forehead: the head (one pixel larger, so no seam of skin) above the hairline
    head = _ellipse(face.x, face.y, 0, 0, face.a + face.px, face.b + face.px)
    hairline = _HAIRLINE[style](face.x, face.a, face.b)
    _paint(canvas, _coverage(torch.maximum(head, face.y - hairline), face.px), face.hair)


def _eye_geometry(face: _Face):
    return 0.44 * face.a, -0.02 * face.b  # centre of the right eye (mirror for the left)


def _beard_colour(face: _Face) -> torch.Tensor:
    # a darker shade of the hair, and always well darker than the skin so a beard shows on any face
    return torch.minimum(face.hair * 0.75, face.skin * 0.6)


def _draw_beard(canvas: torch.Tensor, face: _Face) -> None:
    # jaw and chin below a line that climbs to the ears, a little beyond the chin
    x, y, a, b = face.x, face.y, face.a, face.b
    jaw = _ellipse(x, y, 0, 0.04 * b, 1.03 * a, 1.04 * b)
    top = 0.36 * b - 0.46 * b * (x / a) ** 2
    _paint(canvas, _coverage(torch.maximum(jaw, top - y), face.px), _beard_colour(face))


def _draw_nose(canvas: torch.Tensor, face: _Face) -> None:
    nose = _ellipse(face.x, face.y, 0, 0.22 * face.b, 0.045, 0.06)
    _paint(canvas, _coverage(nose, face.px), face.skin * 0.8)


def _draw_eyes(canvas: torch.Tensor, face: _Face) -> None:
    ex, ey = _eye_geometry(face)
    xs = face.x.abs()
    _paint(canvas, _coverage(_ellipse(xs, face.y, ex, ey, 0.1, 0.078), face.px), _EYE_WHITE)
    _paint(canvas, _coverage(_ellipse(xs, face.y, ex, ey, 0.05, 0.05), face.px), _PUPIL)
    # eyebrows: short arcs above the eyes, a darker shade of the hair
    brow = torch.maximum(_band(face.y, ey - 0.15 + 2.0 * (xs - ex) ** 2, 0.03), (xs - ex).abs() - 0.11)
    _paint(canvas, _coverage(brow, face.px), face.hair * 0.6)


def _mouth_y(face: _Face):
    return 0.5 * face.b


def _draw_mouth_neutral(canvas: torch.Tensor, face: _Face) -> None:
    x, my = face.x, _mouth_y(face)
    line = torch.maximum(_band(face.y, my - 0.4 * x**2, 0.026), x.abs() - 0.36 * face.a)
    _paint(canvas, _coverage(line, face.px), _LIPS)


def _draw_mouth_smiling(canvas: torch.Tensor, face: _Face) -> None:
    # a wide open "D": an upturned upper edge over a half ellipse, teeth along the top
    x, y, a, b = face.x, face.y, face.a, face.b
    top = _mouth_y(face) - 0.05 - 0.9 * x**2
    mouth = torch.maximum(_ellipse(x, y, 0, _mouth_y(face) - 0.05, 0.4 * a, 0.24 * b), top - y)
    _paint(canvas, _coverage(mouth - 0.012, face.px), _LIPS)  # a thin lip line round the opening
    _paint(canvas, _coverage(mouth, face.px), _MOUTH_INSIDE)
    teeth = torch.maximum(mouth, y - (top + 0.055))
    _paint(canvas, _coverage(teeth, face.px), _TEETH)


def _draw_mustache(canvas: torch.Tensor, face: _Face) -> None:
    # thick in the middle, tapering and drooping towards the ends
    x, half_width = face.x, 0.34 * face.a
    taper = (1 - (x / half_width) ** 2).clamp(min=0)
    centre = _mouth_y(face) - 0.1 + 0.6 * x**2
    shape = torch.maximum(_band(face.y, centre, 0.012 + 0.04 * taper), x.abs() - half_width)
    _paint(canvas, _coverage(shape, face.px), _beard_colour(face))


def _draw_glasses(canvas: torch.Tensor, face: _Face) -> None:
    ex, ey = _eye_geometry(face)
    xs, y, px = face.x.abs(), face.y, face.px
    rx, ry, rim = 0.15, 0.115, 0.034
    lens = _ellipse(xs, y, ex, ey, rx, ry)
    _paint(canvas, 0.35 * _coverage(lens, px), _LENS)  # tinted glass: the eyes show through
    frame = lens.abs() - rim
    bridge = torch.maximum(_band(y, ey - 0.03, 0.022), xs - ex + rx)
    temples = torch.maximum(_band(y, ey - 0.03, 0.02), (xs - 0.5 * (ex + rx + face.a)).abs() - 0.5 * (face.a - ex - rx))
    frame = torch.minimum(frame, torch.minimum(bridge, temples))
    _paint(canvas, _coverage(frame, px), _FRAME)


def _draw_hat(canvas: torch.Tensor, face: _Face) -> None:
    # a beanie: a dome wide and tall enough to hide every hair style above its folded band
    x, y, a, b = face.x, face.y, face.a, face.b
    band_y = -0.52 * b  # high enough to leave a gap above the glasses: the two regions stay apart
    dome = torch.maximum(_ellipse(x, y, 0, band_y, 1.3 * a, 0.82 * b), y - band_y)
    _paint(canvas, _coverage(dome, face.px), _HAT)
    band = _rounded_box(x, y, 0, band_y, 1.33 * a, 0.07, 0.05)
    _paint(canvas, _coverage(band, face.px), _HAT_BAND)


# --------------------------------------------------------------------------- rendering


def render(attributes: torch.Tensor, identity: torch.Tensor, image_size: int = 64) -> torch.Tensor:
    """Images ``(N, 3, S, S)`` float32 in [0, 1] of the faces with these attributes and identity factors.

    A pure function of its inputs: the same factors give the same pixels, whatever else is in the
    batch. ``attributes`` is ``(N, 4)`` 0/1 in the order of :data:`ATTRIBUTES`; ``identity`` is
    ``(N, 7)`` in the order of :data:`IDENTITY_FACTORS` (see :func:`sample_factors`).
    """
    attributes, identity = _check_factors(attributes, identity)
    size = _check_image_size(image_size)
    out = torch.empty(len(identity), 3, size, size, dtype=torch.float32, device=identity.device)
    if not len(out):
        return out
    # faces that share a hair style and all four attributes are drawn by the same layers, so we
    # draw them group by group: every layer then applies to a whole chunk, with no masking
    bits = (attributes << torch.arange(len(ATTRIBUTES), device=attributes.device)).sum(1)
    group = identity[:, _STYLE].long() * 2 ** len(ATTRIBUTES) + bits
    order = torch.argsort(group, stable=True)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for members in torch.split(order, torch.unique_consecutive(group[order], return_counts=True)[1].tolist()):
        style, has = int(identity[members[0], _STYLE]), attributes[members[0]].bool().tolist()
        for index in torch.split(members, chunk):
            out.index_copy_(0, index, _render_group(identity[index], size, style, *has))
    return out


def _render_group(identity: torch.Tensor, size: int, style: int, glasses: bool, smiling: bool, beard: bool, hat: bool):
    """The faces of one group, layer by layer from the back."""
    face = _face_geometry(identity, size)
    canvas = torch.empty(len(identity), 3, size, size, dtype=torch.float32, device=identity.device)
    _draw_background(canvas, face)
    _draw_hair_back(canvas, face, style)
    _draw_neck_and_shirt(canvas, face)
    _draw_head(canvas, face)
    if beard:
        _draw_beard(canvas, face)
    _draw_hair_front(canvas, face, style)
    _draw_nose(canvas, face)
    _draw_eyes(canvas, face)
    (_draw_mouth_smiling if smiling else _draw_mouth_neutral)(canvas, face)
    if beard:
        _draw_mustache(canvas, face)
    if glasses:
        _draw_glasses(canvas, face)
    if hat:
        _draw_hat(canvas, face)
    return canvas.clamp_(0.0, 1.0)


def _face_geometry(identity: torch.Tensor, size: int) -> _Face:
    width, length, skin, hair, offset_x, offset_y, _ = identity.unbind(1)
    col = lambda t: t.view(-1, 1, 1)  # noqa: E731 - per-image scalar, broadcast over the pixels
    centres = (torch.arange(size, dtype=torch.float32, device=identity.device) + 0.5) * (2.0 / size) - 1.0
    cx = 0.32 * (offset_x - 0.5)  # up to 0.16 image units (8% of the image) either way
    cy = 0.07 + 0.32 * (offset_y - 0.5)  # a little low: the hat needs the room above
    return _Face(  # face units = image units / _SCALE: the shapes above are drawn in face units
        x=(centres.view(1, 1, size) - col(cx)) / _SCALE,
        y=(centres.view(1, size, 1) - col(cy)) / _SCALE,
        a=col(0.42 + 0.12 * width),
        b=col(0.52 + 0.10 * length),
        skin=_tone(skin, _SKIN_KEYS),
        hair=_tone(hair, _HAIR_KEYS),
        px=2.0 / size / _SCALE,
    )


def _tone(t: torch.Tensor, keys) -> torch.Tensor:
    """Piecewise-linear colour through ``keys`` as ``t`` goes from 0 to 1: ``(N, 3)``."""
    keys = torch.tensor(keys, dtype=torch.float32, device=t.device)
    pos = t * (len(keys) - 1)
    low = pos.floor().clamp(max=len(keys) - 2).long()
    frac = (pos - low).unsqueeze(1)
    return keys[low] * (1 - frac) + keys[low + 1] * frac


def _check_image_size(image_size: int) -> int:
    return check_face_image_size(image_size, "synthetic faces")


def _check_factors(attributes: torch.Tensor, identity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    attributes = check_tensor(attributes, "attributes")
    identity = check_tensor(identity, "identity")
    if attributes.dim() != 2 or attributes.shape[1] != len(ATTRIBUTES):
        raise ValueError(
            f"attributes must have shape (N, {len(ATTRIBUTES)}), one 0/1 column per attribute "
            f"({', '.join(ATTRIBUTES)}), got {tuple(attributes.shape)}"
        )
    if identity.dim() != 2 or identity.shape[1] != len(IDENTITY_FACTORS):
        raise ValueError(
            f"identity must have shape (N, {len(IDENTITY_FACTORS)}), one column per factor "
            f"({', '.join(IDENTITY_FACTORS)}), got {tuple(identity.shape)}"
        )
    if len(attributes) != len(identity):
        raise ValueError(
            f"attributes has {len(attributes)} rows but identity has {len(identity)}; pass one row per face"
        )
    if not bool(((attributes == 0) | (attributes == 1)).all()):
        bad = attributes[(attributes != 0) & (attributes != 1)][:3].tolist()
        raise ValueError(f"attributes must hold only 0 and 1, got values such as {bad}")
    if not torch.is_floating_point(identity):
        raise ValueError(
            f"identity must be a floating-point tensor, got dtype {identity.dtype}; convert with identity.float()"
        )
    identity = identity.float()
    if not bool(torch.isfinite(identity).all()):
        raise ValueError("identity holds NaN or infinite values; every factor must be a number in [0, 1]")
    for j, name in enumerate(IDENTITY_FACTORS):
        column = identity[:, j]
        if name in CATEGORICAL_FACTORS:
            k = CATEGORICAL_FACTORS[name]
            if not bool(((column == column.round()) & (column >= 0) & (column < k)).all()):
                raise ValueError(
                    f"identity factor {name} must be a whole number in 0..{k - 1}, "
                    f"got values such as {column[:3].tolist()}"
                )
        elif not bool(((column >= 0) & (column <= 1)).all()):
            bad = column[(column < 0) | (column > 1)][:3].tolist()
            raise ValueError(f"identity factor {name} must lie in [0, 1], got values such as {bad}")
    return attributes.to(identity.device).long(), identity


# --------------------------------------------------------------------------- ground truth regions


def attribute_regions(
    attributes: torch.Tensor, identity: torch.Tensor, image_size: int = 64, *, dilate: int = 1
) -> torch.Tensor:
    """Bool ``(N, 4, S, S)``: where each attribute shows, the ground truth an edit of it may touch.

    Region ``j`` holds the pixels where the face with attribute ``j`` on differs from the same face
    with it off (by more than 1/255 in any channel), other attributes as given, grown by ``dilate``
    pixels so a model's slightly soft edge is not counted as leaking out.
    """
    attributes, identity = _check_factors(attributes, identity)
    size = _check_image_size(image_size)
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
        raise ValueError(f"dilate must be a non-negative int (pixels), got {dilate!r}")
    regions = torch.empty(len(identity), len(ATTRIBUTES), size, size, dtype=torch.bool, device=identity.device)
    chunk = max(1, 16 * _CHUNK_PIXELS // (size * size))  # two float renders of a chunk at a time, not of all N
    for start in range(0, len(identity), chunk):
        part, who = attributes[start : start + chunk], identity[start : start + chunk]
        for j in range(len(ATTRIBUTES)):
            on, off = part.clone(), part.clone()
            on[:, j], off[:, j] = 1, 0
            changed = (render(on, who, size) - render(off, who, size)).abs().amax(dim=1) > REGION_THRESHOLD
            if dilate:
                grown = F.max_pool2d(changed.float().unsqueeze(1), 2 * dilate + 1, stride=1, padding=dilate)
                changed = grown[:, 0] > 0
            regions[start : start + chunk, j] = changed
    return regions


# --------------------------------------------------------------------------- the dataset


def synthetic_faces(
    num_train: int = 4000,
    num_test: int = 1000,
    *,
    image_size: int = 64,
    seed: int = 0,
    attribute_rates: dict[str, float] | None = None,
    correlation: float = 0.0,
    correlated: tuple[str, str] = ("Facial_Hair", "Wearing_Hat"),
) -> FaceImages:
    """A train/test split of synthetic faces with their attributes and identity factors.

    Train and test come from two independent random streams derived from ``seed``, so the test
    faces are new people, not copies of training faces.
    """
    for name, num in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"{name} must be a positive int, got {num!r}")
    _check_image_size(image_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    train_seed, test_seed = (int(s) for s in np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64) >> 1)
    options = dict(attribute_rates=attribute_rates, correlation=correlation, correlated=correlated)
    attributes_train, identity_train = sample_factors(num_train, seed=train_seed, **options)
    attributes_test, identity_test = sample_factors(num_test, seed=test_seed, **options)
    pair = f"{correlated[0]}~{correlated[1]}"
    return FaceImages(
        name="synthetic faces",
        source=(
            f"latentlab.data.synthfaces (seed {seed}, {image_size}x{image_size} px, correlation {correlation:g} {pair})"
        ),
        x_train=render(attributes_train, identity_train, image_size),
        attributes_train=attributes_train,
        x_test=render(attributes_test, identity_test, image_size),
        attributes_test=attributes_test,
        attribute_names=ATTRIBUTES,
        identity_train=identity_train,
        identity_test=identity_test,
        identity_names=IDENTITY_FACTORS,
    )
