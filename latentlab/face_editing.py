"""Every label-guided model on the same faces, scored the same way: what the face-editing chapter tabulates.

* :func:`train_face_model` builds a model by name (:mod:`latentlab.zoo`) and fits it, with
  checkpoints under ``data/checkpoints/`` so an interrupted run resumes and a finished one loads.
* :func:`editing_scores` gives one table row: reconstruction MSE, FID of reconstructions, edit
  success in both directions by the independent judge, the model's own label accuracy, and on
  synthetic faces (whose generator knows the truth) identity preservation and edit locality.
* :data:`PAPER_FIGURES`: what the papers report, to print next to our numbers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import config, metrics, zoo
from .data.faces import FaceImages
from .fid import FeatureExtractor, frechet_distance
from .judge import IndependentJudge
from .models.base import LatentVariableModel
from .train import fit, list_checkpoints

#: figures the papers report (CelebA; the protocol each used), to print next to ours
PAPER_FIGURES = [
    {"model": "VAC", "data": "CelebA 128 px, Eye", "figure": "FID of reconstructions", "value": 63.9,
     "source": "Maggipinto et al. 2020, Table 1"},
    {"model": "IntroVAC", "data": "CelebA 128 px, Eye", "figure": "FID of reconstructions", "value": 25.5,
     "source": "Maggipinto et al. 2020, Table 1"},
    {"model": "IFcVAE-GAN (residual)", "data": "CelebA 64 px, Smiling", "figure": "reconstruction MSE",
     "value": 0.011, "source": "Creswell et al. 2017, Table 3"},
    {"model": "IFcVAE-GAN (residual)", "data": "CelebA 64 px, Smiling", "figure": "edit success remove / add",
     "value": "98% / 100%", "source": "Creswell et al. 2017, Table 3"},
    {"model": "IFcVAE-GAN (residual)", "data": "CelebA 64 px, Smiling", "figure": "own-head accuracy",
     "value": "92%", "source": "Creswell et al. 2017, Table 3"},
    {"model": "IFcVAE-GAN without L_aux", "data": "CelebA 64 px, Smiling", "figure": "edit success remove / add",
     "value": "28% / 91%", "source": "Creswell et al. 2017, Table 3"},
    {"model": "cVAE-GAN (Bao et al.)", "data": "CelebA 64 px, Smiling", "figure": "edit success remove / add",
     "value": "22% / 85%", "source": "Creswell et al. 2017, Table 3"},
]


def checkpoint_dir(name: str, subset: str | Sequence[str], faces: FaceImages, tag: str = "") -> Path:
    """``data/checkpoints/<model>-<subset>-<data>[-tag]``: one directory per model, subset and data set."""
    subset = subset if isinstance(subset, str) else "+".join(subset)
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{name}-{subset}-{faces.source}-{tag}".strip("-")).strip("_")
    return config.data_root() / "checkpoints" / slug[:150]


def train_face_model(
    name: str,
    faces: FaceImages,
    subset: str | Sequence[str],
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    tag: str = "",
    device: str | torch.device | None = None,
    progress: bool | None = None,
    fit_args: dict | None = None,
    **model_args,
) -> tuple[LatentVariableModel, str]:
    """Build ``name`` for ``faces`` and fit it on the training split of ``subset``; return it and a one-line report.

    ``model_args`` go to :func:`latentlab.zoo.face_model` (``channels=``, ``latent_dim=``, the
    model's weights...); ``tag`` separates runs with different settings. Checkpoints go to
    :func:`checkpoint_dir`: a run that stopped resumes where it was, a finished run is loaded.
    ``progress``: a tqdm bar per model; ``None`` shows one on CUDA, where a model trains for an hour
    or more, and keeps CPU runs to the one-line report.
    """
    x, y = faces.split(subset, "train")
    if y.dim() == 2 and name not in ("vac", "introvac"):
        raise ValueError(f"{name} edits one attribute; give a one-attribute subset (EyeFacial is for VAC/IntroVAC)")
    if y.dim() == 2:
        model_args.setdefault("num_labels", y.shape[1])
    torch.manual_seed(seed)
    model = zoo.face_model(name, image_size=faces.image_size, **model_args)
    directory = checkpoint_dir(name, subset, faces, tag)
    resumed = bool(list_checkpoints(directory))
    if progress is None:
        progress = torch.device(device or config.default_device()).type == "cuda"
    start = time.perf_counter()
    history = fit(model, (x, y), epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                  checkpoint_dir=directory, progress=progress, **(fit_args or {}))
    seconds = time.perf_counter() - start
    final = {k: v[-1] for k, v in history.items() if k in ("loss", "recon", "ae", "mse")}
    how = "resumed/loaded from" if resumed else "trained, checkpoints in"
    top = config.data_root().parent
    shown = directory.relative_to(top) if directory.is_relative_to(top) else directory
    report = (f"{name:>22} on {subset}: {len(x)} images x {epochs} epochs, {seconds:6.1f} s; {how} {shown}; "
              + ", ".join(f"{k} {v:.4g}" for k, v in final.items()))
    return model.cpu().eval(), report


@torch.no_grad()
def reconstructions(model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
    """Decode each image's posterior mean (models that read labels get the true ones), in chunks."""
    chunks = [model.decode(metrics.latent_means(model, xs, ys), ys).clamp(0, 1)
              for xs, ys in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(chunks)


@torch.no_grad()
def edits(model: LatentVariableModel, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
          batch_size: int = 200, **edit_args) -> torch.Tensor:
    """``model.edit(x, y, target, **edit_args)`` in chunks, clamped to [0, 1]."""
    model.eval()
    parts = [model.edit(xs, ys, ts, **edit_args).clamp(0, 1)
             for xs, ys, ts in zip(x.split(batch_size), y.split(batch_size), target.split(batch_size))]
    return torch.cat(parts)


def editing_scores(
    model: LatentVariableModel,
    faces: FaceImages,
    attribute: str,
    judge: IndependentJudge,
    *,
    num_test: int | None = None,
    edit_args: dict | None = None,
) -> dict[str, float | str]:
    """One row of the comparison table, on the test split of one attribute.

    ``edit_args`` go to ``model.edit`` (e.g. ``{"delta": "auto"}`` for VAC and IntroVAC).
    ``recon kept`` is the control for edit success: the share of plain reconstructions the judge
    still gives their true label. An edit "succeeds" trivially in a direction the reconstruction
    already goes (a blurred smile reads as no smile), so success is informative only next to it.

    Edit success is the judge's verdict on every test image edited to the opposite label
    (``add``: 0 -> 1, ``remove``: 1 -> 0), the protocol of Creswell et al.; FID compares test
    images with their reconstructions in the judge's feature space unless Inception's weights are
    present. On synthetic faces, identity preservation (judge-predicted identity factors before and
    after the edit, mean R^2/agreement) and locality (share of the pixel change inside the
    attribute's true region) are added.
    """
    x, y = faces.split([attribute], "test")
    if num_test is not None:
        x, y = x[:num_test], y[:num_test]
    y = y.long()
    recon = reconstructions(model, x, y)
    target = 1 - y
    edited = edits(model, x, y, target, **(edit_args or {}))
    predict = judge.predictor(attribute)
    judged = predict(edited)
    row: dict[str, float | str] = {
        "recon MSE": float((recon - x).pow(2).mean()),
        "recon kept": float((predict(recon) == y).float().mean()),
        "edit add": float((judged[y == 0] == 1).float().mean()),
        "edit remove": float((judged[y == 1] == 0).float().mean()),
    }
    fallback = FeatureExtractor(judge.features, judge.feature_dim, "judge features")
    fid = frechet_distance(x, recon, fallback=fallback)
    row["FID recon"], row["FID features"] = fid.value, fid.features
    try:
        row["own-head acc"] = float((model.predict(x).cpu() == y).float().mean())
    except NotImplementedError:
        row["own-head acc"] = float("nan")  # CSVAE has no classifier of its own
    if faces.identity_test is not None:
        from .data.synthfaces import attribute_regions

        rows = slice(0, len(x))
        identity = metrics.identity_preservation(
            judge.factors, x, edited, judge.factor_names, judge.categorical_factors
        )
        row["identity"] = identity["mean"]
        j = faces.attribute_names.index(attribute)
        regions = attribute_regions(faces.attributes_test[rows], faces.identity_test[rows], faces.image_size)[:, j]
        row["locality"] = metrics.edit_locality(x, edited, regions)
    return row
