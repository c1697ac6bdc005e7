"""The independent judge: a CNN trained on real face images, saved once and reused to score every model.

Creswell et al. (2017, sec. 5) score an attribute edit by asking a *separate* classifier, trained
on real images and never on a model's output, whether the edited image shows the attribute. A
model's own classifier head cannot do this job: the model can learn to fool its own head. The
judge here predicts every attribute of the dataset at once (and, on synthetic faces, the identity
factors too, for :func:`latentlab.evaluation.metrics.identity_preservation`), and its penultimate features
serve as the stand-in feature space of FID when Inception weights cannot be loaded
(:mod:`latentlab.evaluation.fid`).

    judge = IndependentJudge.for_faces(faces, path="data/judges/synthetic-64.pt")   # trains or loads
    judge.report                     # its own test accuracy per attribute: how far to trust it
    metrics.edit_success(model.edit, judge.predictor("Smiling"), x, y)

The file is written atomically and read with ``torch.load(weights_only=True)``; a file trained on
other data is refused, never silently reused or overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..data.faces import FaceImages
from ..models.classifier import AttributeClassifier
from ..nets.faces import BOTTLENECK, FaceClassifier

JUDGE_FORMAT = "latentlab-judge-v1"


class IndependentJudge:
    """Attribute probabilities, identity factors and features of images, from a network trained on real ones."""

    def __init__(
        self,
        model: AttributeClassifier,
        *,
        attribute_names: Sequence[str],
        factor_names: Sequence[str] = (),
        categorical_factors: Sequence[str] = (),
        trained_on: str = "",
        report: dict[str, float] | None = None,
        net_config: dict | None = None,
    ):
        self.model = model.eval()
        self.attribute_names, self.factor_names = tuple(attribute_names), tuple(factor_names)
        self.categorical_factors = tuple(categorical_factors)
        self.trained_on, self.report, self.net_config = trained_on, dict(report or {}), dict(net_config or {})

    # ------------------------------------------------------------------ building

    @classmethod
    def for_faces(
        cls,
        faces: FaceImages,
        *,
        path: str | os.PathLike | None = None,
        epochs: int = 10,
        batch_size: int = 128,
        channels: Sequence[int] | None = None,
        kind: str = "residual",
        learning_rate: float = 1e-3,
        seed: int = 0,
        device: str | torch.device | None = None,
        progress: bool = False,
    ) -> IndependentJudge:
        """Load the judge saved at ``path`` if it was trained on ``faces``; otherwise train one on
        ``faces``' training split (all attributes, plus identity factors where known), score it on
        the test split, and save it to ``path``."""
        if path is not None and Path(path).is_file():
            judge = cls.load(path)
            if judge.trained_on != faces.describe():
                raise ValueError(
                    f"the judge at {path} was trained on '{judge.trained_on}', not on '{faces.describe()}'; "
                    "pass another path, or delete that file to train a new judge (it is never overwritten)"
                )
            return judge
        from ..training import fit

        factors = faces.identity_train is not None
        net_config = {"image_size": faces.image_size, "kind": kind, "channels": list(channels) if channels else None,
                      "num_outputs": len(faces.attribute_names) + (len(faces.identity_names) if factors else 0)}
        model = AttributeClassifier(
            _network(net_config),
            num_attributes=len(faces.attribute_names),
            num_factors=len(faces.identity_names) if factors else 0,
            factor_mean=faces.identity_train.mean(0) if factors else None,
            factor_std=faces.identity_train.std(0).clamp_min(1e-6) if factors else None,
            learning_rate=learning_rate,
        )
        train = (faces.x_train, faces.attributes_train) + ((faces.identity_train,) if factors else ())
        fit(model, train, epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=progress)
        from ..data.synthfaces import CATEGORICAL_FACTORS

        judge = cls(
            model.cpu(),
            attribute_names=faces.attribute_names,
            factor_names=faces.identity_names if factors else (),
            categorical_factors=[f for f in CATEGORICAL_FACTORS if factors and f in faces.identity_names],
            trained_on=faces.describe(),
            net_config=net_config,
        )
        judge.report = judge.evaluate(faces.x_test, faces.attributes_test, faces.identity_test if factors else None)
        if path is not None:
            judge.save(path)
        return judge

    def save(self, path: str | os.PathLike) -> Path:
        from ..training import save_checkpoint

        return save_checkpoint(
            {
                "format": JUDGE_FORMAT,
                "model": self.model.state_dict(),
                "net_config": self.net_config,
                "attribute_names": list(self.attribute_names),
                "factor_names": list(self.factor_names),
                "categorical_factors": list(self.categorical_factors),
                "trained_on": self.trained_on,
                "report": self.report,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> IndependentJudge:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != JUDGE_FORMAT:
            raise ValueError(f"{path} is not a latentlab judge (expected format {JUDGE_FORMAT!r})")
        config = state["net_config"]
        num_factors = len(state["factor_names"])
        model = AttributeClassifier(
            _network(config),
            num_attributes=len(state["attribute_names"]),
            num_factors=num_factors,
        )
        model.load_state_dict(state["model"])
        return cls(
            model,
            attribute_names=state["attribute_names"],
            factor_names=state["factor_names"],
            categorical_factors=state["categorical_factors"],
            trained_on=state["trained_on"],
            report=state["report"],
            net_config=config,
        )

    # ------------------------------------------------------------------ judging

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """P(attribute present) for every attribute: ``(N, A)``."""
        return self.model.outputs(x)[0]

    def factors(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted identity factors ``(N, F)`` in their own units (categorical ones rounded)."""
        if not self.factor_names:
            raise ValueError("this judge was trained without identity factors (they exist for synthetic faces only)")
        factors = self.model.outputs(x)[1]
        for name in self.categorical_factors:
            j = self.factor_names.index(name)
            factors[:, j] = factors[:, j].round()
        return factors

    def predictor(self, attribute: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x -> 0/1`` for one attribute: the ``classifier`` argument of :func:`latentlab.evaluation.metrics.edit_success`."""
        if attribute not in self.attribute_names:
            raise ValueError(f"the judge knows {', '.join(self.attribute_names)}, not {attribute!r}")
        j = self.attribute_names.index(attribute)
        return lambda x: (self.probabilities(x)[:, j] > 0.5).long()

    def reading(self, attributes: Sequence[str]) -> Callable[[torch.Tensor], list[str]]:
        """``images -> one line each``, e.g. ``"judge: Wearing_Hat 97%"``: captions for slider frames."""
        unknown = [a for a in attributes if a not in self.attribute_names]
        if unknown:
            raise ValueError(f"the judge knows {', '.join(self.attribute_names)}, not {', '.join(unknown)}")
        columns = [self.attribute_names.index(a) for a in attributes]

        @torch.no_grad()
        def read(images: torch.Tensor) -> list[str]:
            rows = self.probabilities(images)[:, columns].tolist()
            return ["judge: " + ", ".join(f"{a} {p:.0%}" for a, p in zip(attributes, row)) for row in rows]
        return read

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """The network's last feature maps, averaged over their 4x4 positions: ``(N, channels)``, on CPU.

        The FID fallback feature space. Averaging over positions (as Inception's pool3 does) keeps the
        dimension (the trunk's last width, 32 to 256) well below the few thousand images a chapter
        compares, so the covariance that FID needs is estimated, not singular.
        """
        self.model.eval()
        chunks = []
        for chunk in x.split(batch_size):
            flat = self.model.net.features(chunk.to(self.model.device)).float()
            chunks.append(flat.view(len(chunk), self.feature_dim, -1).mean(-1).cpu())
        return torch.cat(chunks)

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features`: the channels of the trunk's last (4x4) feature maps."""
        return int(self.model.net.feature_dim) // (BOTTLENECK * BOTTLENECK)

    def evaluate(
        self, x: torch.Tensor, attributes: torch.Tensor, factors: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Accuracy per attribute (and R^2 / agreement per identity factor) on held-out real images."""
        report = {}
        predicted = (self.probabilities(x) > 0.5).long()
        for j, name in enumerate(self.attribute_names):
            report[f"accuracy {name}"] = float((predicted[:, j] == attributes[:, j].long()).float().mean())
        if factors is not None and self.factor_names:
            from .metrics import factor_agreement

            for name, score in factor_agreement(factors, self.factors(x), self.factor_names, self.categorical_factors).items():
                report[f"identity {name}"] = score
        return report

    def __repr__(self) -> str:
        return f"IndependentJudge(trained on {self.trained_on!r}; {len(self.attribute_names)} attributes)"


def _network(config: dict) -> FaceClassifier:
    """The judge's CNN from the settings saved with it (so a loaded judge has the trained one's shape)."""
    return FaceClassifier(config["image_size"], config["num_outputs"], channels=config["channels"], kind=config["kind"])
