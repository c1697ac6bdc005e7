"""Input checks that fail early with a message naming the problem and the fix.

A shape error deep inside a convolution says little; these say what was expected,
what arrived, and how to convert it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch


def check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; "
            f"convert with torch.as_tensor({name}, dtype=torch.float32)"
        )
    return x


def check_floating(x: torch.Tensor, name: str) -> None:
    if not torch.is_floating_point(x):
        hint = (
            f"{name}.float() / 255 for 8-bit images"
            if x.dtype == torch.uint8
            else f"{name}.float()"
        )
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert with {hint}")


def check_features(x: object, dim: int, name: str = "x") -> torch.Tensor:
    """``x`` must be a float tensor of shape (batch, dim)."""
    x = check_tensor(x, name)
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}; "
            f"a single example needs a batch dimension: {name}.unsqueeze(0)"
            if x.dim() == 1 and x.shape[0] == dim
            else f"{name} must have shape (batch, {dim}), got {tuple(x.shape)}; "
            f"flatten images with {name}.flatten(1) or check the model's input size"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); pass at least one example")
    check_floating(x, name)
    return x


def check_images(x: object, shape: Sequence[int], name: str = "x") -> torch.Tensor:
    """``x`` must be a float tensor of shape (batch, channels, height, width)."""
    x = check_tensor(x, name)
    expected = tuple(shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        c, h, w = expected
        hint = (
            f"add the channel dimension with {name}.unsqueeze(1)"
            if x.dim() == 3 and tuple(x.shape[1:]) == (h, w) and c == 1
            else f"resize or crop the images to {h}x{w} with {c} channel(s), channels first"
        )
        raise ValueError(
            f"{name} must have shape (batch, {c}, {h}, {w}), got {tuple(x.shape)}; {hint}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; pass at least one image")
    check_floating(x, name)
    return x


def check_labels(y: object, num_classes: int, batch_size: int | None = None, name: str = "y") -> torch.Tensor:
    """``y`` must hold integer class indices in ``0 .. num_classes-1`` (or 0/1 floats for binary labels).

    Returns ``y`` as a long tensor of shape (batch,).
    """
    y = check_tensor(y, name)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of class indices, got shape {tuple(y.shape)}")
    if batch_size is not None and y.shape[0] != batch_size:
        raise ValueError(
            f"{name} has {y.shape[0]} labels but the batch has {batch_size} examples; "
            "pass exactly one label per example"
        )
    if torch.is_floating_point(y):
        if not torch.all(y == torch.round(y)):
            raise ValueError(f"{name} must hold whole class indices, got non-integer values such as {y[y != torch.round(y)][:3].tolist()}")
        y = y.long()
    if y.dtype == torch.bool:
        y = y.long()
    bad = (y < 0) | (y >= num_classes)
    if bool(bad.any()):
        values = sorted(set(y[bad].tolist()))[:5]
        raise ValueError(
            f"{name} must hold class indices in 0..{num_classes - 1}, got {values}; "
            "map your labels to 0..num_classes-1 first (for -1/+1 labels use (y + 1) // 2)"
        )
    return y.long()


def check_binary_labels(y: object, num_labels: int, batch_size: int | None = None, name: str = "y") -> torch.Tensor:
    """``k`` binary attributes per example as a (batch, k) float 0/1 tensor; 1-D labels are accepted when k = 1."""
    y = check_tensor(y, name)
    if y.dim() == 1 and num_labels == 1:
        y = y[:, None]
    if y.dim() != 2 or y.shape[1] != num_labels:
        raise ValueError(
            f"{name} must have shape (batch, {num_labels}) with one 0/1 column per attribute, got {tuple(y.shape)}"
        )
    columns = [check_labels(y[:, i], 2, batch_size, name=f"{name}[:, {i}]") for i in range(num_labels)]
    return torch.stack(columns, dim=1).float()


#: the label value that marks an example as unlabelled in semi-supervised batches
UNLABELLED = -1


def check_partial_labels(
    y: object, num_classes: int, batch_size: int | None = None, name: str = "y"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels where ``UNLABELLED`` (-1) marks an example without one (semi-supervised batches).

    Returns ``(labels, labelled)``: a long tensor with -1 replaced by 0 (safe to index with), and
    the bool mask of the examples that carry a label.
    """
    y = check_tensor(y, name)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    labelled = y != UNLABELLED
    labels = check_labels(torch.where(labelled, y, torch.zeros_like(y)), num_classes, batch_size, name=name)
    return labels, labelled


# ----------------------------------------------------------------------------- training arguments and data


#: the square image sizes every face network, face dataset and face model is built for
FACE_IMAGE_SIZES = (32, 64, 128)


def check_face_image_size(image_size: object, who: str = "face models") -> int:
    """One of :data:`FACE_IMAGE_SIZES` (the residual nets pool to 4x4 from these), with the resize that fixes it."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in FACE_IMAGE_SIZES:
        either = ", ".join(map(str, FACE_IMAGE_SIZES[:-1])) + f" or {FACE_IMAGE_SIZES[-1]}"
        hint = ""
        if isinstance(image_size, int) and image_size > 0:
            nearest = min(FACE_IMAGE_SIZES, key=lambda size: abs(size - image_size))
            hint = f" (e.g. torchvision.transforms.Resize({nearest}) then CenterCrop({nearest}))"
        raise ValueError(
            f"{who}: image_size must be one of FACE_IMAGE_SIZES = {FACE_IMAGE_SIZES} (square images of {either} px), "
            f"got image_size={image_size!r}; resize the images to one of these sizes{hint}"
        )
    return int(image_size)


def check_count(value: object, name: str, minimum: int = 0, hint: str = "") -> int:
    """A whole number ``>= minimum`` (bool, float and string counts are refused, not rounded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        how = f"int({value!r})" if isinstance(value, str) else "a whole number"
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__}); pass {how}{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{hint}")
    return int(value)


def check_learning_rate(value: object, name: str = "learning_rate") -> float:
    """A positive, finite learning rate (torch's optimizers accept inf and refuse negatives only deep inside)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}; typical Adam values are 1e-4 to 1e-3")
    return float(value)


def check_same_shape(output: torch.Tensor, x: torch.Tensor, name: str = "decoder") -> None:
    """The decoder's output must have the data's shape: a width-1 output would broadcast and train silently."""
    if output.shape != x.shape:
        raise ValueError(
            f"the {name}'s output has shape {tuple(output.shape)} but the data x has shape {tuple(x.shape)}; "
            f"build the {name} with the data's size (e.g. MLPDecoder(latent_dim, {x.shape[-1]}) for "
            f"{x.shape[-1]}-D vectors, or image_size/channels matching {tuple(x.shape[1:])})"
        )


def _describe_item(item: object) -> str:
    if isinstance(item, dict):
        return f"a dict with keys {sorted(map(str, item))[:6]}"
    return f"a {type(item).__name__}"


def check_dataset_item(item: object) -> None:
    """What a Dataset yields: a tensor ``x``, or a tuple ``(x, y, ...)`` of tensors, arrays or numbers."""
    def loadable(value: object) -> bool:
        return isinstance(value, (torch.Tensor, np.ndarray, numbers.Number))

    if isinstance(item, (torch.Tensor, np.ndarray)) or (isinstance(item, (tuple, list)) and item and all(map(loadable, item))):
        return
    raise ValueError(
        f"the Dataset yields {_describe_item(item)}, but fit() reads examples as a tensor x or a tuple (x, y, ...) "
        "of tensors; make __getitem__ return e.g. (item['image'], item['label']), and images as tensors "
        "(torchvision.transforms.ToTensor() for PIL images)"
    )


def _chunks(x: torch.Tensor, rows: int = 4096):
    # bounded memory: a finiteness or range check over a large image tensor must not copy it
    return x.split(rows)


def check_finite_values(x: torch.Tensor, name: str = "x") -> None:
    """No NaN or inf in a float tensor of training data (else the loss would be reported as diverging)."""
    if not torch.is_floating_point(x):
        return
    bad_rows = torch.cat([(~torch.isfinite(chunk)).reshape(len(chunk), -1).any(1) for chunk in _chunks(x)])
    if bool(bad_rows.any()):
        first = bad_rows.nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"{name} holds NaN or inf in {int(bad_rows.sum())} example(s) (first: {first}); training on them would only "
            f"report a non-finite loss. Drop or impute them first, e.g. keep = torch.isfinite({name}).flatten(1).all(1)"
        )


def check_training_input(
    x: object, expected: tuple[tuple[float, float], str] | None = None, name: str = "x"
) -> torch.Tensor:
    """The data a model trains on, before any step: a numeric, finite tensor, in ``expected``'s range.

    ``expected`` is the model's ``input_range(x)``: ``((low, high), why and how to fix)``, or None for any
    finite value. Floats of another precision pass (the loop converts them to the model's dtype), and so
    do ``uint8`` images (N, C, H, W) (the loop divides them by 255).
    """
    x = check_tensor(x, name)
    if x.dim() == 0:
        raise ValueError(f"{name} is a single number; pass a tensor with one row per example")
    if not (torch.is_floating_point(x) or (x.dtype == torch.uint8 and x.dim() == 4)):
        check_floating(x, name)
    if x.dtype == torch.uint8:
        return x
    check_finite_values(x, name)
    if expected is not None and x.numel():
        (low, high), why = expected
        extremes = [torch.aminmax(chunk) for chunk in _chunks(x)]  # one pass over a large tensor
        seen_low, seen_high = min(float(e.min) for e in extremes), max(float(e.max) for e in extremes)
        if seen_low < low or seen_high > high:
            raise ValueError(f"{name} has values in [{seen_low:.4g}, {seen_high:.4g}], outside [{low:g}, {high:g}]: {why}")
    return x
