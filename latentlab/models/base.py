"""The one interface every model follows, so the loop, metrics, editing and sliders work for all.

A model is an ``nn.Module`` that also says

* how it encodes (``encode``: named posteriors) and decodes (``decode``: data-space means),
* what its loss terms are (``loss_terms``: a dict of named tensors, ``"loss"`` is the total),
* which optimizers it owns (``configure_optimizers``: named by the parameters they update),
* how one training step updates them (``training_step``). Single-loss models inherit the
  default below; adversarial models (CSVAE, IntroVAC, IFcVAE-GAN) override it with the
  update order of their paper's algorithm box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..checks import check_labels, check_partial_labels, check_same_shape, check_tensor
from ..distributions import LIKELIHOODS, DiagonalGaussian, log_likelihood
from .space import Control, PrincipalDirections, SliderSpace, principal_space

Batch = tuple[torch.Tensor, ...]


def split_batch(batch: Batch, model_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a batch, with a clear error when the labels are missing."""
    if len(batch) < 2:
        raise ValueError(f"{model_name} learns from labels: pass batches (x, y), e.g. fit(model, (x, y), ...)")
    return check_tensor(batch[0], "x"), batch[1]


def bce_against(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross entropy of ``logits`` against one constant target (1: real / fake, as the model names it)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def split_partial_batch(batch: Batch, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, labels, labelled)`` from a semi-supervised batch ``(x, y)`` with ``UNLABELLED`` rows, or ``(x,)``."""
    x = check_tensor(batch[0], "x")
    if len(batch) > 1:
        labels, labelled = check_partial_labels(batch[1], num_classes, len(x))
        return x, labels, labelled
    no_labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
    return x, no_labels, no_labels.bool()


#: a value :meth:`LatentVariableModel.resume_settings` records: numbers, strings, None, and tuples or lists of them
def _plain(value: object) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


class LatentVariableModel(nn.Module):
    """Base class: subclasses implement ``encode``, ``decode`` and ``loss_terms``."""

    #: number of label values the model understands (None: unlabelled model)
    num_classes: int | None = None
    #: whether ``class_log_probs`` / ``predict`` exist: a classifier of the model's own
    has_classifier: bool = False
    #: whether ``slider_space`` reads reference images (the principal directions of their codes)
    sliders_need_reference: bool = True

    #: attributes a resume may find changed. The optimizer settings are applied from the resumed
    #: step on (see :func:`latentlab.fit`); ``training`` is nn.Module's train/eval switch.
    resume_may_change: tuple[str, ...] = (
        "training", "learning_rate", "prior_learning_rate", "weight_decay", "discriminator_momentum",
    )
    #: buffers that hold settings (a fixed likelihood scale, fixed priors), not learned state
    settings_buffers: tuple[str, ...] = ("decoder_log_std",)

    def resume_settings(self) -> dict[str, object]:
        """The settings a resume must find unchanged: what the model was built with that changes its objective.

        :func:`latentlab.fit` records them when a run starts and refuses to resume into a model
        built otherwise (a checkpoint's weights mean nothing under another likelihood or beta). The
        default takes every public attribute holding plain values (numbers, strings, tuples of them:
        the constructor's settings, e.g. ``likelihood``, ``beta``, ``num_classes``) except
        ``resume_may_change``, and the ``settings_buffers`` as lists. Override it (or extend
        ``resume_may_change``) for settings stored otherwise.
        """
        settings = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in vars(self).items()
            if not name.startswith("_") and name not in self.resume_may_change and _plain(value)
        }
        for name, buffer in self.named_buffers():
            if name in self.settings_buffers:
                settings[name] = buffer.detach().cpu().tolist()
        return settings

    def input_range(self, x: torch.Tensor) -> tuple[tuple[float, float], str] | None:
        """The range training data ``x`` must lie in, and why (with the fix); None: any finite value.

        :func:`latentlab.fit` checks it before the first step. Default: images (4-D batches)
        in [0, 1], as every image network and likelihood here assumes, and [0, 1] for a Bernoulli likelihood.
        """
        if x.dim() == 4:
            return (0.0, 1.0), (
                "images must be floats in [0, 1]; for 0..255 pixels divide by 255 (x = x / 255), "
                "or pass the uint8 tensor itself (fit divides it by 255)"
            )
        if getattr(self, "likelihood", None) == "bernoulli":
            return (0.0, 1.0), (
                "a Bernoulli likelihood reads each value as a probability; rescale the data to [0, 1], "
                "or build the model with likelihood='gaussian' for real-valued data"
            )
        return None

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, DiagonalGaussian]:
        raise NotImplementedError

    def decode(self, latents: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live (inputs are moved there by helpers such as ``predict``)."""
        tensor = next(self.parameters(), None)
        tensor = next(self.buffers(), None) if tensor is None else tensor
        return torch.device("cpu") if tensor is None else tensor.device

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Default: one Adam over every parameter, at ``self.learning_rate``."""
        return {"model": torch.optim.Adam(self.parameters(), lr=getattr(self, "learning_rate", 1e-3))}

    def configure_schedulers(self, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, object]:
        """Learning-rate schedulers stepped once per epoch, named like their optimizers. Default: none."""
        return {}

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """Default update: one backward pass of ``loss`` and one step of the single optimizer."""
        (optimizer,) = optimizers.values()
        terms = self.loss_terms(batch)
        self.update(optimizer, terms["loss"])
        return {name: float(value.detach()) for name, value in terms.items()}

    @staticmethod
    def update(
        optimizer: torch.optim.Optimizer, loss: torch.Tensor, *, retain_graph: bool = False, accumulate: bool = False,
        own_parameters_only: bool = False,
    ) -> None:
        """One step of ``optimizer`` on ``loss``: zero its gradients, backward, average over processes, step.

        Every model's ``training_step`` updates through here, so multi-process training (torchrun)
        averages exactly the gradients each optimizer is about to use. Gradients that ``loss`` leaves on
        parameters of *other* optimizers stay there; the step that owns them zeroes them first, unless
        it passes ``accumulate=True`` to add its loss's gradient to them (IntroVAC's encoder step
        differentiates line 9's loss in two backward passes and steps on their sum).
        ``own_parameters_only=True`` computes the gradients of this optimizer's parameters and nothing
        else: networks the loss only passes through get no weight gradients, which saves their cost.
        """
        if not accumulate:
            optimizer.zero_grad(set_to_none=True)
        inputs = LatentVariableModel.own_parameters(optimizer) if own_parameters_only else None
        loss.backward(retain_graph=retain_graph, inputs=inputs)
        LatentVariableModel.apply_gradients(optimizer)

    @staticmethod
    def own_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        """The parameters ``optimizer`` steps (those that require gradients): what its loss is differentiated for."""
        return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]

    @staticmethod
    def apply_gradients(optimizer: torch.optim.Optimizer) -> None:
        """Step ``optimizer`` on the gradients its parameters already hold (averaged over processes first).

        For a loss whose one backward pass serves two optimizers (VAC: encoder+classifier and decoder).
        """
        distributed.average_gradients(optimizer)
        optimizer.step()

    @staticmethod
    def update_simultaneously(steps: Sequence[tuple[torch.optim.Optimizer, torch.Tensor]]) -> None:
        """Several optimizers, each stepped on its own loss, all gradients taken at the *same* parameters.

        For algorithm boxes that compute every update from one forward pass before applying any
        (IFcVAE-GAN, Creswell et al. 2017, Algorithm 1): each loss is differentiated with respect to
        its optimizer's parameters only (``torch.autograd.grad``, so no loss leaves gradients on the
        others' parameters), the gradients are averaged over processes, and only then does every
        optimizer step. Stepping one before differentiating the next would both change the
        parameters the later gradients are taken at and invalidate the shared graph.
        """
        for optimizer, loss in steps:
            params = LatentVariableModel.own_parameters(optimizer)
            for param, grad in zip(params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)):
                param.grad = grad  # None where this loss does not reach the parameter: the step skips it
            distributed.average_gradients(optimizer)
        for optimizer, _ in steps:
            optimizer.step()

    def on_epoch_start(self, epoch: int) -> None:
        """Called by :func:`latentlab.fit` before every epoch (also the first after a resume).

        Default: nothing. Models whose update depends on the epoch (IntroVAC's VAC warm-up) override it.
        """

    # Reconstruction through the decoder's likelihood: models call set_likelihood once in their
    # constructor, then share the two methods below.

    def set_likelihood(self, likelihood: str, decoder_std: float, learn_decoder_std: bool = False) -> None:
        """Check and store p(x|.)'s family and scale (a fixed buffer, or a learned log-scale)."""
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        if decoder_std <= 0:
            raise ValueError(f"decoder_std must be positive, got {decoder_std}")
        self.likelihood = likelihood
        log_std = torch.tensor(math.log(decoder_std))
        if learn_decoder_std:
            self.decoder_log_std = nn.Parameter(log_std)
        else:
            self.register_buffer("decoder_log_std", log_std)

    def reconstruction_log_likelihood(self, x: torch.Tensor, decoder_output: torch.Tensor) -> torch.Tensor:
        """log p(x | decoder_output) per example, summed over every data dimension."""
        check_same_shape(decoder_output, x)
        scale = torch.exp(self.decoder_log_std)
        return log_likelihood(self.likelihood, x, decoder_output, scale, event_dims=x.dim() - 1)

    def to_data_space(self, decoder_output: torch.Tensor) -> torch.Tensor:
        """The mean of the likelihood: probabilities for Bernoulli logits, the output itself otherwise."""
        return torch.sigmoid(decoder_output) if self.likelihood == "bernoulli" else decoder_output

    def sample(self, y: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """One image per label in ``y``: the label's latent drawn from its prior, the rest from ``style``
        (one row per label) or N(0, I). A model without labels takes the number of images instead."""
        raise NotImplementedError(f"{type(self).__name__} does not sample from labels")

    def edit(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Change the attribute of ``x`` from ``y`` to ``target``; models without labels cannot."""
        raise NotImplementedError(f"{type(self).__name__} has no label to edit")

    def controls(self) -> list[Control]:
        """The latent coordinates a slider may move."""
        return []

    def one_label(self, y: object) -> torch.Tensor | None:
        """One example's label as a batch of one for this model's methods: a class index, shape (1,).

        Models whose label is a vector of binary attributes (CSVAE, VAC) return shape (1, k).
        """
        return None if y is None else torch.as_tensor(y, device=self.device).reshape(1)

    def slider_space(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        reference: torch.Tensor | PrincipalDirections | None = None,
        num_directions: int = 3,
        span: float | None = None,
        names: Sequence[str] | None = None,
    ) -> SliderSpace:
        """The sliders of one image ``x`` (1, C, H, W) with its label ``y`` from :meth:`one_label`, called
        in eval mode by :func:`latentlab.editing.sliders.slider_space`, which prepares both.

        Default, for a model with one unlabelled latent ``z``: the top ``num_directions`` principal
        directions of the codes of ``reference`` images, in standard deviations. Model families
        with a labelled subspace override it with the coordinates their labels gave a meaning;
        ``span`` and ``names`` are for those (a range, the attribute or class names).
        """
        return principal_space(self, x, reference, num_directions)

    def class_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log q(y|x) for every class, for models with a classifier of their own."""
        raise NotImplementedError(f"{type(self).__name__} has no classifier of its own")

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """The most probable label of each example under ``class_log_probs`` (eval mode, in chunks, on CPU)."""
        if not self.has_classifier:
            raise NotImplementedError(f"{type(self).__name__} has no classifier of its own")
        self.eval()
        chunks = [self.class_log_probs(chunk.to(self.device)).argmax(-1).cpu() for chunk in x.split(batch_size)]
        return torch.cat(chunks)


class LabelDecoderModel(LatentVariableModel):
    """Base for models whose decoder reads ``[z, onehot(y)]`` (CVAE, CondVAE-info): an edit is a label switch.

    Subclasses set ``num_classes`` and have an ``encoder`` (with ``latent_dim``) and a ``decoder(z, condition)``.
    """

    @staticmethod
    def check_label_networks(num_classes: int, **networks: nn.Module) -> None:
        """Refuse fewer than 2 classes, and networks (by name) whose ``condition_dim`` is not ``num_classes``.

        Networks without a ``condition_dim`` attribute (custom modules) are trusted.
        """
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        for name, net in networks.items():
            width = getattr(net, "condition_dim", num_classes)
            if width != num_classes:
                raise ValueError(
                    f"the {name} reads onehot(y) but takes a condition of width {width}; "
                    f"build it with condition_dim={num_classes}"
                )

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    def controls(self) -> list[Control]:
        return [Control(f"z[{i}]", -3.0, 3.0) for i in range(self.latent_dim)]

    def one_hot(self, y: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Checked labels as a float one-hot tensor of width ``num_classes``."""
        return F.one_hot(check_labels(y, self.num_classes, batch_size), self.num_classes).float()

    def decode(self, latents: dict[str, torch.Tensor], y: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of p(x|z,y) for the labels ``y`` (the labels to decode *with*)."""
        if y is None:
            raise ValueError(f"the {type(self).__name__} decoder needs the label to decode with: call decode(latents, y)")
        z = latents["z"]
        return self.decode_condition(z, self.one_hot(y, len(z)))

    def decode_condition(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z, c) for any condition vector c of width ``num_classes``.

        ``decode`` passes onehot(y); a slider passes a point between two labels, (1 - t, t), to show
        what the decoder does with a label value it never saw in training.
        """
        if condition.dim() != 2 or condition.shape != (len(z), self.num_classes):
            raise ValueError(
                f"condition must be (batch, num_classes) = ({len(z)}, {self.num_classes}), got {tuple(condition.shape)}"
            )
        return self.to_data_space(self.decoder(z, condition.to(z)))

    @torch.no_grad()
    def edit(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Encode x (with its label ``y`` where the encoder reads it), decode the posterior mean with ``target``."""
        return self.decode({"z": self.encode(x, y)["z"].mean}, target)

    sliders_need_reference = False

    def slider_space(self, x, y=None, *, names=None, **unused) -> SliderSpace:
        """The label the decoder is given: between 0 and 1 for two classes (the condition (1 - t, t)),
        else one weight per class, normalised to sum to one. Starts at ``y``, or at the model's own
        prediction where it has a classifier."""
        if y is None:
            if not self.has_classifier:
                raise ValueError(f"{type(self).__name__} encodes with the label: pass y, the image's label")
            y = self.predict(x).to(self.device)
        z = self.encode(x, y)["z"].mean
        own = self.one_hot(y, 1)[0]
        if self.num_classes == 2:
            label = f" (0 = {names[0]}, 1 = {names[1]})" if names else ""
            axes = [Control(f"label value{label}", 0.0, 1.0, float(own[1]))]

            def decode(t: torch.Tensor) -> torch.Tensor:
                t = t.to(z)
                return self.decode_condition(z.expand(len(t), -1), torch.cat([1 - t, t], dim=1))
        else:
            axes = [Control(f"weight of {names[c] if names else f'class {c}'}", 0.0, 1.0, float(own[c]))
                    for c in range(self.num_classes)]

            def decode(weights: torch.Tensor) -> torch.Tensor:
                weights = weights.to(z).clamp_min(0)
                total = weights.sum(1, keepdim=True)
                # all weights at 0: no class is preferred, decode with the uniform condition
                condition = torch.where(total > 0, weights / total.clamp_min(1e-12), 1 / self.num_classes)
                return self.decode_condition(z.expand(len(weights), -1), condition)
        return SliderSpace(axes, decode, "the label the decoder is given")

