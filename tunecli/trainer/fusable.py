"""Which configurations can train together as one fused group, and which must train alone:
the one thing the engine asks the trainer about fusion (``why_not_fused``, ``group_key``,
``round_fixes``; ``why_not_functional`` for user models, ``work_per_example`` for ``auto``).

What members share (``SHARED_BY_MODEL``): depth (an MLP) or conv blocks and kernel size (a
CNN), batch size, optimizer, activation, batch norm, Nesterov, AMSGrad, crop and flip. The rest
is per member: learning rate, momentum, betas, weight decay, L1, dropout, gradient clipping, the
schedule and its settings, label smoothing, the initialisation and the widths (units,
channels). The other augmentations and mixup (``ALONE``) train one trial at a time. A user
model's members share all but ``PER_MEMBER``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from tunecli.catalogue import is_layer_width
from tunecli.trainer import models
from tunecli.trainer.loop import prepare

if TYPE_CHECKING:
    from tunecli.spec.models import TrainerSpec

__all__ = ["ALONE", "FUSABLE_OPTIMIZERS", "PER_MEMBER", "SHARED", "SHARED_BY_MODEL",
           "WIDTHS_BY_MODEL", "group_key", "round_fixes", "why_not_functional", "why_not_fused",
           "work_per_example"]

_COMMON = ("batch_size", "optimizer", "activation", "batch_norm", "nesterov", "amsgrad", "crop",
           "flip")
# What one stacked model's members must share, per fused model; and the widths a round fixes
# for its members too (they may differ, padded, but the padding costs the widest's work).
SHARED_BY_MODEL = {"mlp": ("depth", *_COMMON), "cnn": ("conv_blocks", "kernel_size", *_COMMON)}
WIDTHS_BY_MODEL = {"mlp": ("width",), "cnn": ("channels", "classifier_width")}
SHARED = SHARED_BY_MODEL["mlp"]
# A user model's members may differ only in what the training loop applies itself (the
# optimizer's and the schedule's settings, label smoothing in the loss); anything else its
# builder may read, so they share it.
PER_MEMBER = ("lr", "momentum", "beta1", "beta2", "weight_decay", "l1", "grad_clip", "schedule",
              "step_size", "gamma", "plateau_patience", "warmup_epochs", "label_smoothing")
ALONE = ("rotate", "translate", "cutout", "mixup")  # not in the fused step
FUSABLE_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def why_not_fused(trainer: TrainerSpec, params: dict[str, Any]) -> str | None:
    """Why this configuration trains alone (None: it can join a group)."""
    if trainer.model in models.MODELS and trainer.model not in SHARED_BY_MODEL:
        return (f"model {trainer.model!r} is trained one trial at a time (fused: "
                f"{', '.join(SHARED_BY_MODEL)} and, with trainer.fuse: K, user models)")
    if trainer.model not in models.MODELS and trainer.fuse == "auto":
        return (f"model {trainer.model!r} is a user model, which auto does not fuse (it fuses "
                f"the built-in {' and '.join(SHARED_BY_MODEL)}); set trainer.fuse: K (--fuse K) "
                "to fuse it through torch.func")
    if trainer.compile:
        return "trainer.compile is on: compiled models are trained one at a time"
    if trainer.data_shares:
        return ("trainer.data_shares trains the first epochs on a share of the data, one trial "
                "at a time")
    if trainer.cv or trainer.repeats > 1:
        return "trainer.repeats/cv trains each trial's runs in lockstep, one trial at a time"
    config = models.full_config(trainer.model, params)
    if config["optimizer"] not in FUSABLE_OPTIMIZERS:
        return (f"optimizer {config['optimizer']!r} is trained one trial at a time (fused: "
                f"{', '.join(FUSABLE_OPTIMIZERS)})")
    if config["amsgrad"]:
        return "amsgrad is trained one trial at a time (the fused optimizers have none)"
    used = [name for name in ALONE if config[name]]
    if used:
        return f"{', '.join(used)} is trained one trial at a time (not in the fused step)"
    return None


def work_per_example(trainer: TrainerSpec, params: dict[str, Any],
                     base_dir: str | None = None, data_root: str | None = None) -> int:
    """The multiply-adds of one example's forward pass through the configuration's model (how
    ``auto`` tells a model too large to gain from fusion): an MLP's weights, a CNN's
    convolutions at each layer's image size."""
    _, bundle = prepare(trainer, "val_loss", base_dir, data_root)
    config = models.full_config(trainer.model, params)
    model = models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs, base_dir)
    return models.multiply_adds(model, bundle.input_shape)


def group_key(trainer: TrainerSpec, params: dict[str, Any]) -> tuple[Any, ...]:
    """Configurations with equal keys can train as one group."""
    config = models.full_config(trainer.model, params)
    if trainer.model not in SHARED_BY_MODEL:  # a user model: all but PER_MEMBER
        return tuple(sorted((name, repr(value)) for name, value in config.items()
                            if name not in PER_MEMBER))
    return tuple(config[name] for name in SHARED_BY_MODEL[trainer.model])


def round_fixes(model: str, name: str) -> bool:
    """Whether a fused round fixes parameter ``name`` for its later members: what they must
    share, and a built-in model's widths (they may differ, padded, but the padding costs the
    widest's work)."""
    if model not in SHARED_BY_MODEL:
        return name not in PER_MEMBER
    return name in SHARED_BY_MODEL[model] or name in WIDTHS_BY_MODEL[model] \
        or (model == "mlp" and is_layer_width(name))


_PROBED: dict[tuple[Any, ...], str | None] = {}


def why_not_functional(trainer: TrainerSpec, params: dict[str, Any],
                       base_dir: str | None = None, data_root: str | None = None
                       ) -> str | None:
    """Why this user model cannot be fused through ``torch.func`` (None: it can, and always
    for the built-in models, which are stacked directly). Probed once per structure: two
    copies take a training step and an evaluation under ``vmap``, which refuses random draws
    (dropout: members could not draw their lone trials' masks) and in-place writes to state
    that is not the model's parameters or buffers."""
    if trainer.model in models.MODELS:
        return None
    key = (trainer.model, base_dir, data_root, group_key(trainer, params))
    if key not in _PROBED:
        _PROBED[key] = _probe(trainer, params, base_dir, data_root)
    return _PROBED[key]


def _probe(trainer: TrainerSpec, params: dict[str, Any], base_dir: str | None,
           data_root: str | None) -> str | None:
    device, bundle = prepare(trainer, "val_loss", base_dir, data_root)
    config = models.full_config(trainer.model, params)
    try:
        built = [models.build(trainer.model, config, bundle.input_shape, bundle.n_outputs,
                              base_dir).to(device) for _ in range(2)]
        from tunecli.trainer.stacked import FunctionalStack

        stacked = FunctionalStack(built, device)
        x = bundle.x_train[:2]
        stacked.forward(x.expand(2, *x.shape), None).float().sum().backward()  # type: ignore[no-untyped-call]
        unused = [name for name, p in zip(stacked.names, stacked.params, strict=True)
                  if p.grad is None]
        if unused:  # the fused optimizer steps every parameter; torch's skips these
            return (f"model {trainer.model!r} cannot be fused through torch.func: parameter "
                    f"{unused[0]} takes no part in the output")
        stacked.training = False
        with torch.no_grad():
            stacked.forward(x.expand(2, *x.shape), None)
    except Exception as exc:  # user code: anything it raises means "train it alone"
        text = (str(exc).strip().splitlines() or [""])[0][:200]
        why = (" (it draws random numbers in training, e.g. dropout, which fused members could"
               " not draw as their lone trials do)" if "random" in text else "")
        return (f"model {trainer.model!r} cannot be fused through torch.func{why}: "
                f"{type(exc).__name__}: {text}")
    return None
