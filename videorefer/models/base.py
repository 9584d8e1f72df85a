"""What both model families share beyond the family contract's signatures: batching of processor outputs, decoding,
and a causal LM whose visual inputs are spliced into the input embeddings.

A family's processor subclasses `RegionProcessorMixin` (after `ProcessorMixin`) and names its `visual_keys`; its model
subclasses `SplicedCausalLMMixin` (before `Qwen2ForCausalLM`) and implements `encode_visual` and `splice_inputs`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from transformers import BatchFeature

from ..compat import generation as compat_generation
from ..prompts import IGNORE_LABEL
from ..region_inputs import RegionInputs

__all__ = ["RegionProcessorMixin", "SplicedCausalLMMixin"]


class RegionProcessorMixin:
    """`collate` and `decode` for a processor with a `tokenizer` and `visual_keys`."""

    visual_keys: tuple[str, ...] = ()

    def collate(self, features: Sequence[Mapping[str, Any]], padding_side: str = "left") -> BatchFeature:
        """One batch from single-sample outputs: `input_ids`, `attention_mask` (and `labels` when every sample has
        them) padded on `padding_side` (left for generation, right for training); visual tensors concatenated along
        their first axis; region inputs joined (`RegionInputs.collate`); `layout` becomes the list of the samples'."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if not features:
            raise ValueError("collate needs at least one sample")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        longest = max(f["input_ids"].shape[-1] for f in features)

        def pad(row: torch.Tensor, value: int) -> torch.Tensor:  # (L,) -> (longest,)
            filler = row.new_full((longest - row.shape[-1],), value)
            return torch.cat([filler, row] if padding_side == "left" else [row, filler])

        batch: dict[str, Any] = {
            "input_ids": torch.stack([pad(f["input_ids"][0], pad_id) for f in features]),
            "attention_mask": torch.stack([pad(f["attention_mask"][0], 0) for f in features]),
        }
        if all("labels" in f for f in features):
            batch["labels"] = torch.stack([pad(f["labels"][0], IGNORE_LABEL) for f in features])
        for key in self.visual_keys:
            values = [f[key] for f in features]
            if isinstance(values[0], RegionInputs):
                batch[key] = type(values[0]).collate(values)
            else:
                batch[key] = torch.cat(values)
        batch["layout"] = [f["layout"] for f in features]
        return BatchFeature(batch)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of generated ids, special tokens left out, as the official code decodes."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


class SplicedCausalLMMixin:
    """`forward` and `generate` of a causal LM fed `input_ids` plus the family's visual inputs (`visual_keys`) or
    `visual_features` already computed by `encode_visual`. The spliced embeddings replace the ids; generation starts
    from them, as the official code does, so only new tokens come back. `visual_options` are further keyword
    arguments of `prepare_multimodal_inputs` (e.g. VL3's k-means generator); `layout` from the processor is ignored so
    that `model(**processor(...))` works."""

    visual_keys: tuple[str, ...] = ()
    visual_options: tuple[str, ...] = ()
    _HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "subfolder")

    @classmethod
    def checkpoint_config(cls, path, config: Any, kwargs: Mapping[str, Any]):
        """`config` if it is already this family's, else the checkpoint's config.json (Hub arguments of `kwargs`
        passed on); then completed from the checkpoint (`resolve_checkpoint_config`: the vision settings, ids)."""
        if not isinstance(config, cls.config_class):
            config = cls.config_class.from_pretrained(path, **{k: kwargs[k] for k in cls._HUB_KWARGS if k in kwargs})
        cls.resolve_checkpoint_config(config, path)
        return config

    @staticmethod
    def resolve_checkpoint_config(config: Any, path) -> None:
        """Fill in what an official config.json only names (a family overrides this)."""

    def prepare_multimodal_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        visual_features: Any = None,
        padding_side: str = "right",
        **visual_inputs,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Spliced `(inputs_embeds (b, L', d), attention_mask (b, L'), position_ids (b, L'), labels (b, L') or None)`
        from ids and the family's visual inputs (`visual_keys`, plus `visual_options`), or from `visual_features`
        already computed by `encode_visual` (e.g. for a follow-up question)."""
        unknown = set(visual_inputs) - {*self.visual_keys, *self.visual_options}
        if unknown:
            raise ValueError(f"unknown visual inputs {sorted(unknown)}; expected some of {list(self.visual_keys)}")
        if visual_features is None:
            if not any(key in visual_inputs for key in self.visual_keys):
                raise ValueError(f"prepare_multimodal_inputs needs visual_features or some of {list(self.visual_keys)}")
            visual_features = self.encode_visual(**visual_inputs)
        return self.splice_inputs(input_ids, attention_mask, visual_features, labels, padding_side)

    def _visual_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Pops the visual inputs and options out of `kwargs`; returns those that are given."""
        kwargs.pop("layout", None)
        taken = {key: kwargs.pop(key, None) for key in (*self.visual_keys, *self.visual_options)}
        return {key: value for key, value in taken.items() if value is not None}

    def _has_visual(self, visual: Mapping[str, Any], visual_features: Any) -> bool:
        return visual_features is not None or any(key in visual for key in self.visual_keys)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        visual_features: Any = None,
        **kwargs,
    ):
        """Causal LM outputs (loss when `labels` are given: labels are spliced like the embeddings, visual positions
        ignored); visual inputs in `kwargs` (the family's `visual_keys`) or `visual_features` are spliced in first."""
        visual = self._visual_kwargs(kwargs)
        if inputs_embeds is None and self._has_visual(visual, visual_features):
            inputs_embeds, attention_mask, position_ids, labels = self.prepare_multimodal_inputs(
                input_ids, attention_mask, labels, visual_features, **visual
            )
            input_ids = None
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            inputs_embeds=inputs_embeds, labels=labels, **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        visual_features: Any = None,
        **kwargs,
    ):
        """New token ids `(b, n)`; the prompt enters as spliced embeddings (left padded)."""
        visual = self._visual_kwargs(kwargs)
        if self._has_visual(visual, visual_features):
            kwargs["inputs_embeds"], attention_mask, _, _ = self.prepare_multimodal_inputs(
                input_ids, attention_mask, None, visual_features, padding_side="left", **visual
            )
            input_ids = None
        if input_ids is None and kwargs.get("inputs_embeds") is not None:
            # As in the official code: the prompt enters as embeddings, so a repetition penalty sees only new tokens
            # (every row of a left-padded batch alike).
            kwargs = compat_generation.output_only_penalty(kwargs, self.generation_config)
        return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
