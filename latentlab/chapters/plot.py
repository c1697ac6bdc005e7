"""Figures the chapters share: image grids with labelled rows, and line plots of a study.

Matplotlib only, imported on first use; every function draws into a new figure and returns it,
so a notebook shows it and a script can save it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..checks import check_tensor


#: dots per inch of every stored figure: a figure of up to 7.5 inches is at most 1080 pixels wide,
#: which the page shows at column width (about 750 CSS pixels), so it stays sharp on a screen of
#: 1.5 device pixels per CSS pixel and readable on any.
BOOK_DPI = 144
#: widest figure, in inches, that the page shows at a readable size (7.5 in at 144 dpi: 1/1.6)
MAX_FIGURE_WIDTH = 7.5


def book_style(dpi: int = BOOK_DPI, font_size: float = 10) -> None:
    """The chapters' Matplotlib settings: figures stored at ``dpi``, readable fonts, images drawn pixel-exact.

    ``image.interpolation = "nearest"`` shows each image pixel as a sharp block instead of smoothing
    a 32-pixel face into blur (and keeps the PNG small: blocks compress well).
    """
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": font_size,
                         "image.interpolation": "nearest"})


def _grid(images: torch.Tensor, ncols: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (H', W', C) picture with a 1-pixel white gap between tiles."""
    images = check_tensor(images, "images").detach().float().cpu().clamp(0, 1)
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, channels, height, width), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrows = -(-n // ncols)
    canvas = torch.ones(c, nrows * (h + 1) - 1, ncols * (w + 1) - 1)
    for i, image in enumerate(images):
        r, col = divmod(i, ncols)
        canvas[:, r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    return canvas.permute(1, 2, 0)


def image_rows(
    rows: Mapping[str, torch.Tensor],
    *,
    title: str | None = None,
    column_labels: Sequence[str] | None = None,
    scale: float = 0.6,
    max_width: float = MAX_FIGURE_WIDTH,
):
    """One row of images per entry of ``rows`` (name -> (N, C, H, W) in [0, 1]), the name on the left.

    Each image is ``scale`` inches wide, less when the row would make the figure wider than
    ``max_width`` inches (the book's column).
    """
    import matplotlib.pyplot as plt

    ncols = max(len(images) for images in rows.values())
    scale = min(scale, (max_width - 1.5) / ncols)
    # constrained layout places the labels and a title added later (fig.suptitle) when the figure is drawn
    fig, axes = plt.subplots(len(rows), 1, figsize=(scale * ncols + 1.5, scale * len(rows) + 0.3 + (0.4 if title else 0)),
                             squeeze=False, layout="constrained")
    for ax, (name, images) in zip(axes[:, 0], rows.items()):
        picture = _grid(images, ncols)
        ax.imshow((picture.squeeze(-1) if picture.shape[-1] == 1 else picture).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        for side in ax.spines.values():
            side.set_visible(False)
    if column_labels is not None:
        tile = rows[next(iter(rows))].shape[-1] + 1
        axes[0, 0].set_xticks(
            [tile * i + tile / 2 - 1 for i in range(len(column_labels))], list(column_labels), fontsize=8
        )
        axes[0, 0].xaxis.tick_top()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def image_grid(images: torch.Tensor, *, ncols: int, title: str | None = None, scale: float = 0.6,
               max_width: float = MAX_FIGURE_WIDTH):
    """All ``images`` in a grid of ``ncols`` columns, each ``scale`` inches wide (at most ``max_width`` in all)."""
    import matplotlib.pyplot as plt

    scale = min(scale, max_width / ncols)
    picture = _grid(images, ncols)
    nrows = -(-len(images) // ncols)
    fig, ax = plt.subplots(figsize=(scale * ncols, scale * nrows + (0.4 if title else 0.1)), layout="constrained")
    ax.imshow((picture.squeeze(-1) if picture.shape[-1] == 1 else picture).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def study(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    reference: Mapping[str, float] | None = None,
):
    """Lines of a parameter study: one marker line per entry of ``series``; ``reference`` draws dashed levels."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for name, values in series.items():
        ax.plot(list(x), list(values), marker="o", label=name)
    for name, level in (reference or {}).items():
        ax.axhline(level, linestyle="--", color="grey", linewidth=1)
        ax.annotate(name, (ax.get_xlim()[0], level), fontsize=8, color="grey", va="bottom")
    if logx:
        ax.set_xscale("log")
    ax.set_xticks(list(x), [f"{v:g}" for v in x])
    ax.minorticks_off()  # a log axis' minor labels would print over the chosen ticks
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
