"""Every label-guided model on the same faces, scored the same way: what the face-editing chapter tabulates.

* :func:`train_face_model` builds a model by name (:func:`latentlab.face_model`) and fits it, with
  checkpoints under ``data/checkpoints/`` so an interrupted run resumes and a finished one loads;
  :func:`training_table` sums up many such runs in one table.
* :func:`editing_scores` gives one table row: reconstruction MSE, FID of reconstructions, edit
  success in both directions by the independent judge, the model's own label accuracy, and on
  synthetic faces (whose generator knows the truth) identity preservation and edit locality.
* :data:`PAPER_FIGURES`: what the papers report, to print next to our numbers.
* :func:`chapter_run`: the data, sizes and judge the editing and sliders chapters share per
  profile, so the sliders chapter loads the very models the editing chapter trained.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import config
from ..evaluation import metrics
from ..config import Profile
from ..data.faces import INTROVAC_NEGATIVES_PER_POSITIVE, FaceImages, balance_indices, subset_attributes
from ..evaluation.fid import FeatureExtractor, frechet_distance
from ..evaluation.judge import IndependentJudge
from ..models import FACE_MODELS, LatentVariableModel, face_model
from ..training import fit, list_checkpoints

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
    """``data/checkpoints/<model>-<subset>[-tag]-<data>-<hash>``: one directory per model, subset, settings and data set.

    The data set's description can be long (a CelebA copy's says how it was cropped); it is cut
    to keep the name short, and the hash of the whole description keeps two data sets apart.
    """
    subset = subset if isinstance(subset, str) else "+".join(subset)
    digest = hashlib.sha1(faces.source.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", "-".join(p for p in (name, subset, tag) if p)).strip("_")
    data = re.sub(r"[^A-Za-z0-9.+-]+", "_", faces.source).strip("_")[:60].strip("_")
    return config.data_root() / "checkpoints" / f"{slug}-{data}-{digest}"


@dataclass(frozen=True)
class TrainingReport:
    """What one :func:`train_face_model` call did: the run's size, its time, trained or loaded, the last losses."""

    model: str
    subset: str
    images: int
    epochs: int
    seconds: float
    resumed: bool  # a checkpoint was there: the run resumed (or, finished, was only loaded)
    checkpoints: Path
    final: dict[str, float]

    def __str__(self) -> str:
        how = "resumed/loaded" if self.resumed else "trained"
        losses = ", ".join(f"{k} {v:.4g}" for k, v in self.final.items())
        return f"{self.model} on {self.subset}: {self.images} images x {self.epochs} epochs, {self.seconds:.1f} s, {how}; {losses}"


def training_table(reports: Sequence[TrainingReport]) -> str:
    """One Markdown table for many runs, so a chapter shows its training as one readable summary."""
    lines = ["| model | subset | images × epochs | this run | last epoch's losses |", "|---|---|---|---|---|"]
    for r in reports:
        how = f"loaded ({r.seconds:.0f} s)" if r.resumed else f"trained in {r.seconds:.0f} s"
        losses = ", ".join(f"{k} {v:.4g}" for k, v in r.final.items())
        lines.append(f"| `{r.model}` | {r.subset} | {r.images} × {r.epochs} | {how} | {losses} |")
    roots = sorted({str(r.checkpoints.parent) for r in reports})  # already shown relative to the data root's folder
    return "\n".join(lines) + f"\n\nCheckpoints: one directory per model, subset and data set under {', '.join(f'`{d}/`' for d in roots)}."


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
    negatives_per_positive: int | None = None,
    **model_args,
) -> tuple[LatentVariableModel, TrainingReport]:
    """Build ``name`` for ``faces`` and fit it on the training split of ``subset``; return it and a :class:`TrainingReport`.

    ``model_args`` go to :func:`latentlab.face_model` (``channels=``, ``latent_dim=``, the
    model's weights...); ``tag`` separates runs with different settings. Checkpoints go to
    :func:`checkpoint_dir`: a run that stopped resumes where it was, a finished run is loaded.
    ``progress``: a tqdm bar per model; ``None`` shows one on CUDA, where a model trains for an hour
    or more, and keeps CPU runs quiet (the report says what happened). ``negatives_per_positive``
    balances the training split as the IntroVAC code does (:func:`~latentlab.data.faces.balance_indices`).
    """
    x, y = faces.split(subset, "train")
    if negatives_per_positive is not None:
        keep = balance_indices(y, negatives_per_positive)
        x, y = x[keep], y[keep]
    several = FACE_MODELS[name].several_attributes if name in FACE_MODELS else False
    if y.dim() == 2 and not several:
        takes = [n for n, entry in FACE_MODELS.items() if entry.several_attributes]
        raise ValueError(f"{name} edits one attribute; give a one-attribute subset (EyeFacial is for {', '.join(takes)})")
    if y.dim() == 2:
        model_args.setdefault("num_labels", y.shape[1])
    if several:
        model_args.setdefault("attribute_names", subset_attributes(subset))  # names the sliders and edits
    torch.manual_seed(seed)
    model = face_model(name, image_size=faces.image_size, **model_args)
    directory = checkpoint_dir(name, subset, faces, tag)
    resumed = bool(list_checkpoints(directory))
    if progress is None:
        progress = torch.device(device or config.default_device()).type == "cuda"
    start = time.perf_counter()
    history = fit(model, (x, y), epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                  checkpoint_dir=directory, progress=progress, **(fit_args or {}))
    final = {k: v[-1] for k, v in history.items() if k in ("loss", "recon", "ae", "mse")}
    shown_subset = subset if isinstance(subset, str) else "+".join(subset)
    report = TrainingReport(name, shown_subset, len(x), epochs, time.perf_counter() - start, resumed,
                            config.shown_path(directory), final)
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
    row["FID recon"], row["FID features"], row["FID fallback reason"] = fid.value, fid.features, fid.fallback_reason
    # CSVAE has no classifier of its own
    row["own-head acc"] = float((model.predict(x).cpu() == y).float().mean()) if model.has_classifier else float("nan")
    if faces.identity_test is not None:
        from ..data.synthfaces import attribute_regions

        rows = slice(0, len(x))
        identity = metrics.identity_preservation(
            judge.factors, x, edited, judge.factor_names, judge.categorical_factors
        )
        row["identity"] = identity["mean"]
        j = faces.attribute_names.index(attribute)
        regions = attribute_regions(faces.attributes_test[rows], faces.identity_test[rows], faces.image_size)[:, j]
        row["locality"] = metrics.edit_locality(x, edited, regions)
    return row


@dataclass(frozen=True)
class ChapterRun:
    """What one profile of the face chapters runs on: data, network sizes, training length, judge, checkpoint tag.

    ``steps``, when set, is the training length of every model in optimizer steps (rounded up to
    whole epochs), so a model on a small balanced subset (Eye) trains as long as one on all the
    images; otherwise every model trains ``epochs`` epochs.
    """

    profile: str
    faces: FaceImages
    why: str  # why this data, printed by the chapter
    nets: dict
    epochs: int
    judge_epochs: int
    judge_channels: tuple[int, ...] | None
    num_test: int
    tag: str
    batch_size: int = 64
    steps: int | None = None

    @property
    def synthetic(self) -> bool:
        return self.faces.identity_test is not None

    def judge(self, device: str | torch.device | None = None) -> IndependentJudge:
        """The chapters' independent judge: loaded from ``data/judges/`` when it exists, else trained and saved."""
        data = "synthetic" if self.synthetic else "celeba"
        path = config.data_root() / "judges" / f"editing-{data}-{self.profile}-{self.faces.image_size}px.pt"
        return IndependentJudge.for_faces(self.faces, path=path, epochs=self.judge_epochs,
                                          channels=self.judge_channels, device=device)

    @staticmethod
    def negatives_per_positive(subset: str | Sequence[str]) -> int | None:
        """IntroVAC's balance for its named subsets (Eye, Facial, EyeFacial); None (all images) otherwise."""
        return INTROVAC_NEGATIVES_PER_POSITIVE.get(subset) if isinstance(subset, str) else None

    def training_images(self, subset: str | Sequence[str]) -> int:
        """How many training images ``subset`` trains on: balanced as IntroVAC does for its named subsets."""
        return len(balance_indices(self.faces.labels(subset, "train"), self.negatives_per_positive(subset)))

    def epochs_for(self, subset: str | Sequence[str]) -> int:
        """The epochs that give ``subset``'s model this run's length (``steps``, or ``epochs`` without it)."""
        if self.steps is None:
            return self.epochs
        steps_per_epoch = -(-self.training_images(subset) // self.batch_size)
        return max(1, -(-self.steps // steps_per_epoch))

    def warmup_epochs(self, subset: str | Sequence[str]) -> int:
        """A warm-up (IntroVAC's plain VAC) of the first quarter of its epochs, so the decoder reconstructs
        before the adversarial terms start (the authors warm up 5 of 150 epochs; these runs are short)."""
        return self.epochs_for(subset) // 4

    def train(self, name: str, subset: str | Sequence[str], device: str | torch.device | None = None,
              variant: str = "", **model_args) -> tuple[LatentVariableModel, TrainingReport]:
        """:func:`train_face_model` with this run's sizes (same checkpoints for every chapter that asks).

        IntroVAC's subsets (Eye, Facial, EyeFacial) are balanced as its code does; a model that warms
        up (IntroVAC) does so for :meth:`warmup_epochs` unless ``warmup_epochs`` is given. ``variant`` names a run whose
        ``model_args`` change the model's settings, so that it gets checkpoints of its own.
        """
        if FACE_MODELS[name].warms_up:
            model_args.setdefault("warmup_epochs", self.warmup_epochs(subset))
        model, report = train_face_model(
            name, self.faces, subset, epochs=self.epochs_for(subset), batch_size=self.batch_size,
            tag=f"{self.tag}-{variant}" if variant else self.tag, device=device,
            negatives_per_positive=self.negatives_per_positive(subset),
            **self.nets, **model_args,
        )
        return model, replace(report, model=f"{name} ({variant})") if variant else report


def chapter_run(profile: Profile | None = None) -> ChapterRun:
    """The face chapters' run for ``profile``: CelebA photographs when ``data/celeba/`` holds them, else synthetic faces.

    * gpu, CelebA: 128 px, the papers' widths, 30 epochs (the papers train 10 to 150).
    * cpu, CelebA: 64 px (the information-factorization paper's size) with a quarter of the
      papers' widths and latent 64, 500 optimizer steps per model: about an hour and a half for
      every model of both chapters on 2 cores, on a copy of a few thousand photographs.
    * otherwise (smoke, or no CelebA): synthetic faces at 32 px with narrow nets, about a minute
      per model on a CPU.
    """
    from ..data import DatasetNotFoundError, load_celeba_in_memory
    from ..data.synthfaces import synthetic_faces

    profile = profile or config.profile()
    faces, why = None, f"profile {profile.name} runs on synthetic faces"
    if profile.name in ("gpu", "cpu"):
        size, limit = (128, 60_000) if profile.name == "gpu" else (64, 20_000)
        try:
            faces = load_celeba_in_memory(None, image_size=size, limit=limit)
        except DatasetNotFoundError as error:
            why = f"CelebA is not in data/celeba ({str(error).splitlines()[0]})"
    if faces is not None and profile.name == "gpu":
        return ChapterRun(profile.name, faces, "CelebA photographs", {"channels": None, "latent_dim": 256}, epochs=30,
                          judge_epochs=10, judge_channels=None, num_test=2000, tag="gpu-30ep")
    if faces is not None:
        return ChapterRun(profile.name, faces, "CelebA photographs, at 64 px with narrow networks (profile cpu)",
                          {"channels": (16, 32, 64, 128), "latent_dim": 64}, epochs=0, judge_epochs=8,
                          judge_channels=None, num_test=len(faces.x_test), tag="cpu-64px-500steps", steps=500)
    faces = synthetic_faces(*profile.choose(smoke=(400, 200), cpu=(3000, 600), gpu=(20_000, 2000)),
                            image_size=32, seed=0)
    nets = {"channels": profile.choose(smoke=(8, 16, 32), cpu=(16, 32, 64), gpu=(32, 64, 128)),
            "latent_dim": profile.choose(smoke=16, cpu=32, gpu=64)}
    epochs = profile.choose(smoke=1, cpu=10, gpu=40)
    return ChapterRun(profile.name, faces, f"Synthetic faces, not CelebA: {why}.", nets, epochs,
                      judge_epochs=profile.choose(smoke=1, cpu=12, gpu=10),
                      judge_channels=profile.choose(smoke=(8, 16, 32), cpu=(32, 64, 128), gpu=(32, 64, 128)),
                      num_test=profile.choose(smoke=100, cpu=600, gpu=2000), tag=f"{profile.name}-{epochs}ep")
