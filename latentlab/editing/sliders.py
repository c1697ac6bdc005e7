"""Latent sliders: move along the latent coordinates that labels gave a meaning, and watch the decoded image.

For a trained model and one input image, :func:`slider_space` asks the model which coordinates
are worth moving and how to decode any setting of them (``LatentVariableModel.slider_space``):

* VAC, IntroVAC: delta along each attribute's direction w_i / ||w_i|| (VAC sec. 4.2);
* CSVAE: each coordinate of w, the labels' subspace (the image's own z is kept);
* CCVAE: each characteristic coordinate z_c[i] (the image's own z_style is kept);
* CVAE, CondVAE-info, M2, IFcVAE-GAN: the label the decoder is given, between 0 and 1 (binary
  labels: the condition (1 - t, t)) or the weight of each class (more classes);
* VAE (any model with one latent ``z``): the top principal directions of the codes of
  ``reference`` images, in standard deviations along each.

Every slider starts at the image's own value, so the first picture is its reconstruction.
Two views share the space: :class:`LiveSliders` (ipywidgets: redraws at every move while a kernel
runs) and :func:`static_sliders` (frames decoded once into a self-contained HTML snippet that
works with no kernel, as in the rendered book).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..models import LatentVariableModel
from ..models.space import PrincipalDirections, SliderSpace, principal_directions

Caption = Callable[[torch.Tensor], Sequence[str]]


# ---------------------------------------------------------------------------------------- the space


def image_spaces(model: LatentVariableModel, images: torch.Tensor, labels: object = None,
                 **space_args) -> Callable[[int], SliderSpace]:
    """``index -> slider_space`` of ``images[index]`` (with its label), for views over several input images.

    Checks the images once and, for a model whose sliders need them, reduces ``reference`` images to
    their principal directions once, not once per image. ``space_args`` go to :func:`slider_space`.
    """
    _check_images(images, labels)
    reference = space_args.get("reference")
    if isinstance(reference, torch.Tensor) and model.sliders_need_reference:
        space_args["reference"] = principal_directions(model, reference, space_args.get("num_directions", 3))

    def space_of(index: int) -> SliderSpace:
        return slider_space(model, images[index], None if labels is None else labels[index], **space_args)
    return space_of


def _one_image(x: torch.Tensor, model: LatentVariableModel) -> torch.Tensor:
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or len(x) != 1:
        raise ValueError(f"slider_space takes one image, (C, H, W) or (1, C, H, W); got shape {tuple(x.shape)}")
    return x.to(model.device, torch.float32)


@torch.no_grad()
def slider_space(
    model: LatentVariableModel,
    x: torch.Tensor,
    y: object = None,
    *,
    reference: torch.Tensor | PrincipalDirections | None = None,
    num_directions: int = 3,
    span: float | None = None,
    names: Sequence[str] | None = None,
) -> SliderSpace:
    """The slider axes of ``model`` for the one image ``x`` (with its label ``y`` where the model reads it).

    ``reference``: images (or their :func:`principal_directions`) for a model whose only latent is ``z``;
    ``span``: VAC/IntroVAC deltas run over [-span, span] (default: the model's ``controls``, +/- 2 delta);
    ``names``: attribute names (CSVAE) or class names (label-decoder models) for the axes' labels.
    """
    model.eval()
    return model.slider_space(_one_image(x, model), model.one_label(y), reference=reference,
                              num_directions=num_directions, span=span, names=names)


# ---------------------------------------------------------------------------------------- images


def to_pil(image: torch.Tensor, size: int | None = None) -> Image.Image:
    """A (C, H, W) image in [0, 1] as a PIL image, enlarged to ``size`` px wide with nearest-neighbour pixels."""
    array = (image.detach().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    if size is not None and size != picture.width:
        picture = picture.resize((size, round(size * picture.height / picture.width)), Image.NEAREST)
    return picture


def encode_image(image: torch.Tensor, image_format: str = "png", size: int | None = None) -> bytes:
    """PNG (lossless, best for small images) or JPEG (photos at 64 px and up) bytes of one image."""
    buffer = io.BytesIO()
    if image_format == "png":
        to_pil(image, size).save(buffer, format="PNG", optimize=True)
    elif image_format == "jpeg":
        to_pil(image, size).save(buffer, format="JPEG", quality=88)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    return buffer.getvalue()


def data_uri(image: torch.Tensor, image_format: str = "png") -> str:
    encoded = base64.b64encode(encode_image(image, image_format)).decode("ascii")
    return f"data:image/{image_format};base64,{encoded}"


def _image_names(images: torch.Tensor, labels: object, names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(images):
            raise ValueError(f"names must name every image: {len(names)} names for {len(images)} images")
        return list(names)
    if labels is None:
        return [f"image {i}" for i in range(len(images))]
    return [f"image {i} (label {torch.as_tensor(labels[i]).tolist()})" for i in range(len(images))]


def _check_images(images: torch.Tensor, labels: object) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        raise ValueError("images must be a (N, C, H, W) tensor of at least one image in [0, 1]")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"labels must have one row per image: {len(labels)} labels for {len(images)} images")


# ---------------------------------------------------------------------------------------- live (ipywidgets)


class LiveSliders:
    """ipywidgets view: pick an input image, move its sliders, see the decoded image redrawn at once.

    Shows itself in Jupyter (``display(sliders)`` or as a cell's last value); ``widget`` is the
    ipywidgets box. Every redraw's wall time is kept in ``redraw_seconds`` (and shown under the
    image), the figure the slider benchmark reports.
    """

    def __init__(self, model: LatentVariableModel, images: torch.Tensor, labels: object = None, *,
                 names: Sequence[str] | None = None, axis_names: Sequence[str] | None = None,
                 reference: torch.Tensor | PrincipalDirections | None = None, num_directions: int = 3,
                 span: float | None = None, display_size: int = 160, caption: Caption | None = None,
                 continuous_update: bool = True, steps: int = 100):
        import ipywidgets as widgets  # imported here so `import latentlab` does not need a notebook stack

        self._space_of = image_spaces(model, images, labels, reference=reference, num_directions=num_directions,
                                      span=span, names=axis_names)
        self.model, self.images, self.labels = model, images, labels
        self.display_size, self.caption = display_size, caption
        self.redraw_seconds: list[float] = []
        self._quiet = False

        self.space = self._space_of(0)
        self.sliders = [
            widgets.FloatSlider(value=axis.default, min=axis.low, max=axis.high, step=(axis.high - axis.low) / steps,
                                description=axis.name, continuous_update=continuous_update, readout_format=".2f",
                                style={"description_width": "initial"}, layout=widgets.Layout(width="460px"))
            for axis in self.space.axes
        ]
        for slider in self.sliders:
            slider.observe(self._on_move, names="value")
        choices = [(name, i) for i, name in enumerate(_image_names(images, labels, names))]
        self.picker = widgets.Dropdown(options=choices, value=0, description="input image",
                                       style={"description_width": "initial"})
        self.picker.observe(self._on_pick, names="value")
        self.reset_button = widgets.Button(description="reset", tooltip="every slider back to the image's own value")
        self.reset_button.on_click(lambda _: self.reset())
        self.input_view, self.output_view = widgets.Image(format="png"), widgets.Image(format="png")
        self.status = widgets.HTML()
        titled = [widgets.VBox([widgets.HTML(f"<b>{title}</b>"), view], layout=widgets.Layout(margin="0 16px 0 0"))
                  for title, view in (("input", self.input_view), ("decoded", self.output_view))]
        self.widget = widgets.VBox([
            widgets.HTML(f"<i>{html.escape(type(model).__name__)}: {html.escape(self.space.kind)}</i>"),
            widgets.HBox([self.picker, self.reset_button]),
            widgets.HBox(titled),
            widgets.VBox(self.sliders),
            self.status,
        ])
        self._show_input()
        self.redraw()

    @property
    def values(self) -> list[float]:
        return [slider.value for slider in self.sliders]

    def set_values(self, values: Sequence[float]) -> None:
        """Move every slider at once (one redraw)."""
        if len(values) != len(self.sliders):
            raise ValueError(f"give one value per slider ({len(self.sliders)}), got {len(values)}")
        self._quiet = True
        try:
            for slider, value in zip(self.sliders, values):
                slider.value = value
        finally:
            self._quiet = False
        self.redraw()

    def reset(self) -> None:
        """Every slider back to the image's own value: the picture is its reconstruction again."""
        self.set_values([axis.default for axis in self.space.axes])

    def redraw(self) -> torch.Tensor:
        """Decode the current setting and show it; returns the decoded image."""
        start = time.perf_counter()
        image = self.space.render(self.values)[0]
        self.output_view.value = encode_image(image, size=self.display_size)
        text = f"redraw {1000 * (time.perf_counter() - start):.1f} ms"
        if self.caption is not None:
            text = f"{html.escape(self.caption(image[None])[0])} &middot; {text}"
        self.status.value = text
        self.redraw_seconds.append(time.perf_counter() - start)
        return image

    def _on_move(self, change: dict) -> None:
        if not self._quiet:
            self.redraw()

    def _on_pick(self, change: dict) -> None:
        self.space = self._space_of(change["new"])
        self._quiet = True
        try:
            for slider, axis in zip(self.sliders, self.space.axes):
                # widen before narrowing, so the slider never refuses a value it is about to accept
                slider.min, slider.max = min(slider.min, axis.low), max(slider.max, axis.high)
                slider.value = axis.default
                slider.min, slider.max = axis.low, axis.high
        finally:
            self._quiet = False
        self._show_input()
        self.redraw()

    def _show_input(self) -> None:
        self.input_view.value = encode_image(self.images[self.picker.value], size=self.display_size)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# ---------------------------------------------------------------------------------------- static (no kernel)


@dataclass
class StaticSliders:
    """Precomputed slider frames as one self-contained HTML snippet (``_repr_html_``, :meth:`save`).

    ``data`` holds, per input image, its data URI, its reconstruction and, per axis, the grid of
    values and a frame for each (``None`` at the image's own value, where the frame is the
    reconstruction). One slider moves at a time: moving one returns the others to the image's own
    value, because only single-axis moves were decoded.
    """

    title: str
    data: dict
    display_size: int

    def __repr__(self) -> str:  # short: a notebook stores it as the text/plain twin of the HTML
        axes = len(self.data["images"][0]["axes"]) if self.data["images"] else 0
        return f"StaticSliders({self.title!r}: {len(self.data['images'])} image(s) x {axes} axis/axes, {self.nbytes / 1024:.0f} KB)"

    @property
    def nbytes(self) -> int:
        """Size of the HTML snippet, what the slider adds to a page."""
        return len(self.html().encode())

    def html(self) -> str:
        blob = json.dumps(self.data, separators=(",", ":")).replace("</", "<\\/")
        element_id = "latentlab-slider-" + hashlib.sha1(blob.encode()).hexdigest()[:12]
        first = self.data["images"][0]
        size = self.display_size
        picker = ""
        if len(self.data["images"]) > 1:
            options = "".join(f'<option value="{i}">{html.escape(p["name"])}</option>'
                              for i, p in enumerate(self.data["images"]))
            picker = f'<label>input image <select class="latentlab-slider-picker">{options}</select></label> '
        rows = []
        for a, axis in enumerate(first["axes"]):
            rows.append(
                f'<div><label style="display:inline-block;min-width:16em">{html.escape(axis["name"])}</label> '
                f'<input type="range" class="latentlab-slider-input" min="0" max="{len(axis["values"]) - 1}" '
                f'step="1" value="{axis["default_index"]}" data-axis="{a}" aria-label="{html.escape(axis["name"])}" '
                f'style="width:14em;vertical-align:middle"> '
                f'<output class="latentlab-slider-value">{axis["values"][axis["default_index"]]:.2f}</output></div>'
            )
        pixelated = f"width:{size}px;image-rendering:pixelated;border:1px solid #ccc"
        caption = html.escape(first["reconstruction_caption"])
        return f"""<div class="latentlab-slider" id="{element_id}" style="margin:0.5em 0">
<div><b>{html.escape(self.title)}</b></div>
<div>{picker}<button type="button" class="latentlab-slider-reset">reset</button></div>
<div style="display:flex;gap:1em;align-items:flex-start;margin:0.4em 0">
<figure style="margin:0">
<img class="latentlab-slider-input-image" alt="input image" src="{first["input"]}" style="{pixelated}">
<figcaption>input</figcaption></figure>
<figure style="margin:0">
<img class="latentlab-slider-image" alt="decoded image" src="{first["reconstruction"]}" style="{pixelated}">
<figcaption>decoded<br><small class="latentlab-slider-caption">{caption}</small></figcaption></figure>
</div>
{"".join(rows)}
<script type="application/json" class="latentlab-slider-frames">{blob}</script>
<script>{_SLIDER_SCRIPT.replace("ELEMENT_ID", element_id)}</script>
</div>"""

    def _repr_html_(self) -> str:
        return self.html()

    def save(self, path) -> None:
        """A standalone HTML page with this slider (to share, or to open without the book)."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"<!doctype html><meta charset='utf-8'><title>{html.escape(self.title)}</title>\n{self.html()}\n")


# Kept to ES5-era DOM calls so it runs in any browser that renders the book; scoped to its own element.
_SLIDER_SCRIPT = """(function () {
  var root = document.getElementById("ELEMENT_ID");
  var data = JSON.parse(root.querySelector("script.latentlab-slider-frames").textContent);
  var image = root.querySelector("img.latentlab-slider-image");
  var input = root.querySelector("img.latentlab-slider-input-image");
  var caption = root.querySelector(".latentlab-slider-caption");
  var picker = root.querySelector("select.latentlab-slider-picker");
  var sliders = root.querySelectorAll("input.latentlab-slider-input");
  var readouts = root.querySelectorAll("output.latentlab-slider-value");
  function current() { return data.images[picker ? Number(picker.value) : 0]; }
  function setSlider(b, index) {
    sliders[b].value = index;
    readouts[b].textContent = current().axes[b].values[index].toFixed(2);
  }
  function show(src, text) { image.src = src; caption.textContent = text || ""; }
  function reset() {
    var p = current();
    for (var b = 0; b < sliders.length; b++) { setSlider(b, p.axes[b].default_index); }
    input.src = p.input;
    show(p.reconstruction, p.reconstruction_caption);
  }
  function move(a) {
    var p = current(), f = Number(sliders[a].value), axis = p.axes[a];
    for (var b = 0; b < sliders.length; b++) { if (b !== a) { setSlider(b, p.axes[b].default_index); } }
    setSlider(a, f);
    if (axis.frames[f] === null) { show(p.reconstruction, p.reconstruction_caption); }
    else { show(axis.frames[f], axis.captions ? axis.captions[f] : ""); }
  }
  for (var a = 0; a < sliders.length; a++) {
    sliders[a].addEventListener("input", move.bind(null, a));
  }
  if (picker) { picker.addEventListener("change", reset); }
  root.querySelector("button.latentlab-slider-reset").addEventListener("click", reset);
})();"""


@torch.no_grad()
def static_sliders(
    model: LatentVariableModel,
    images: torch.Tensor,
    labels: object = None,
    *,
    title: str | None = None,
    names: Sequence[str] | None = None,
    axis_names: Sequence[str] | None = None,
    reference: torch.Tensor | PrincipalDirections | None = None,
    num_directions: int = 3,
    span: float | None = None,
    num_frames: int = 9,
    display_size: int = 128,
    image_format: str = "auto",
    caption: Caption | None = None,
    axes: Sequence[int] | None = None,
) -> StaticSliders:
    """Decode ``num_frames`` settings of every axis, for every input image, into a :class:`StaticSliders`.

    Each axis's grid spans its range evenly, with the point nearest the image's own value moved onto
    it, so that frame is the reconstruction. ``image_format``: ``"png"``, ``"jpeg"`` or ``"auto"``
    (PNG up to 32 px, JPEG above, which keeps a photo slider a few hundred KB). ``caption``: maps a
    batch of decoded images to one string each (e.g. an independent classifier's reading), shown
    under the frame. ``axes``: indices of the axes to show (default: all), so a model with many
    (a 64-dimensional z_c) shows the few that matter without decoding frames for the rest.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    space_of = image_spaces(model, images, labels, reference=reference, num_directions=num_directions,
                            span=span, names=axis_names)
    if image_format == "auto":
        image_format = "png" if images.shape[-1] <= 32 else "jpeg"
    entries = []
    kind = ""
    for index, name in enumerate(_image_names(images, labels, names)):
        space = space_of(index)
        kind = space.kind
        shown = _chosen_axes(axes, len(space.axes))
        reconstruction = space.render(space.defaults)
        entry = {
            "name": name,
            "input": data_uri(images[index].clamp(0, 1), image_format),
            "reconstruction": data_uri(reconstruction[0], image_format),
            "reconstruction_caption": caption(reconstruction)[0] if caption else "",
            "axes": [],
        }
        for a in shown:
            axis = space.axes[a]
            grid = torch.linspace(axis.low, axis.high, num_frames)
            own = int((grid - axis.default).abs().argmin())
            grid[own] = axis.default
            frames = space.traverse(a, grid)
            texts = list(caption(frames)) if caption else None
            entry["axes"].append({
                "name": axis.name,
                "values": [round(float(v), 4) for v in grid],
                "default_index": own,
                "frames": [None if f == own else data_uri(frame, image_format) for f, frame in enumerate(frames)],
                "captions": texts,
            })
        entries.append(entry)
    title = title or f"{type(model).__name__}: {kind}"
    return StaticSliders(title, {"images": entries}, display_size)


def _chosen_axes(axes: Sequence[int] | None, count: int) -> list[int]:
    if axes is None:
        return list(range(count))
    chosen = [int(a) for a in axes]
    bad = [a for a in chosen if not 0 <= a < count]
    if not chosen or bad or len(set(chosen)) != len(chosen):
        raise ValueError(f"axes must be distinct indices 0..{count - 1} of the model's {count} slider axes, got {list(axes)}")
    return chosen


@torch.no_grad()
def axis_readings(
    model: LatentVariableModel,
    images: torch.Tensor,
    labels: object,
    read: Callable[[torch.Tensor], torch.Tensor],
    **space_args,
) -> list[dict]:
    """What each slider does, measured: ``read`` (e.g. a judge's probabilities, (N, R)) of the decoded image
    with the axis at its low end, at the image's own value and at its high end, averaged over ``images``.

    Returns one dict per axis: ``name`` and the (R,) means ``low``, ``own``, ``high``. ``space_args``
    go to :func:`slider_space` through :func:`image_spaces`.
    """
    space_of = image_spaces(model, images, labels, **space_args)
    totals: list[dict] = []
    for index in range(len(images)):
        space = space_of(index)
        settings = space.defaults.repeat(1 + 2 * len(space.axes), 1)
        for a, axis in enumerate(space.axes):
            settings[1 + 2 * a, a], settings[2 + 2 * a, a] = axis.low, axis.high
        readings = torch.as_tensor(read(space.render(settings))).float()
        if not totals:
            totals = [{"name": axis.name, "low": 0.0, "own": 0.0, "high": 0.0} for axis in space.axes]
        for a, row in enumerate(totals):
            row["own"] = row["own"] + readings[0]
            row["low"] = row["low"] + readings[1 + 2 * a]
            row["high"] = row["high"] + readings[2 + 2 * a]
    return [{**row, **{end: row[end] / len(images) for end in ("low", "own", "high")}} for row in totals]
