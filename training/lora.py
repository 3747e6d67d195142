"""LoRA adapters (peft): attach them, explain why attaching failed, fold them back into a full model.

peft and transformers check each other's versions; a clash must read as "install peft>=X", not as
a target-module problem, and a real target-module mismatch names the model's linear layers.
"""

from __future__ import annotations

import re
from typing import Any

from pipe_embed.pipeline.core.errors import ConfigError, PipeError, require
from pipe_embed.training.config import TrainConfig


def add_lora(model: Any, config: TrainConfig) -> None:
    """Attach LoRA adapters (peft) so only they train."""
    peft = require("peft", extra="lora")
    if config.qlora:
        peft.prepare_model_for_kbit_training(model[0].auto_model,
                                             use_gradient_checkpointing=config.grad_checkpointing)
    lora = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                           target_modules=config.lora_target_modules or None, task_type="FEATURE_EXTRACTION")
    try:
        model.add_adapter(lora)
    except ValueError as exc:
        raise lora_error(exc, model) from exc


_PEFT_TOO_OLD = re.compile(r"please use a version\s*>=\s*([0-9][0-9A-Za-z.+-]*[0-9A-Za-z])", re.IGNORECASE)


def lora_error(exc: Exception, model: Any) -> PipeError:
    """The user's fix for a failed add_adapter: a peft/transformers version clash, or target modules."""
    from importlib.metadata import PackageNotFoundError, version

    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    too_old = _PEFT_TOO_OLD.search(text)
    if too_old:
        needed = too_old.group(1)
        try:
            peft_version, transformers_version = version("peft"), version("transformers")
        except PackageNotFoundError:  # pragma: no cover - both are installed when we get here
            peft_version = transformers_version = "?"
        return PipeError(f"LoRA: transformers {transformers_version} needs peft>={needed}, "
                         f"but peft {peft_version} is installed",
                         hint=f"run: pip install 'peft>={needed}' (or downgrade transformers to a release "
                              f"that supports peft {peft_version})")
    if "target" in text.lower():
        known = linear_module_names(model)
        example = f" (its linear layers: {', '.join(known)})" if known else ""
        return ConfigError(f"field 'lora_target_modules': {text}",
                           hint=f"set lora_target_modules (--lora-target-modules) to module names of this "
                                f"model{example}")
    return PipeError(f"LoRA: {text}")


def linear_module_names(model: Any, limit: int = 8) -> list[str]:
    """Distinct last names of the model's linear layers (what peft's target_modules match)."""
    import torch

    names: list[str] = []
    for key, module in model[0].auto_model.named_modules():
        leaf = key.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and leaf and leaf not in names:
            names.append(leaf)
    return names[:limit]


def merge_lora(model: Any) -> None:
    """Fold trained LoRA weights into the base layers so the model saves as a plain full model."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import _get_submodules

    inner = model[0].auto_model
    for key, module in list(inner.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent, _target, name = _get_submodules(inner, key)
            module.merge()
            setattr(parent, name, module.get_base_layer())
    if hasattr(inner, "peft_config"):
        del inner.peft_config
    inner._hf_peft_config_loaded = False


__all__ = ["add_lora", "linear_module_names", "lora_error", "merge_lora"]
