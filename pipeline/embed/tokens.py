"""The model's tokenizer as the ONNX backend and the int8 export use it: read from the model folder
without transformers where possible, and token ids padded into one batch of model inputs.

Shared by :mod:`pipeline.embed.onnx_export` (encoding) and :mod:`pipeline.embed.int8` (activation
ranges for smoothing), so neither imports the other for it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Sequence

import numpy as np


@cache
def fast_tokenizer(folder: str):
    """The model's ``tokenizers.Tokenizer`` with padding and truncation off (callers set their own).

    Read straight from ``tokenizer.json`` when the folder has one: importing transformers for it
    costs seconds at the start of every run. Otherwise converted by transformers.
    """
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if path.is_file():
        tok = Tokenizer.from_file(str(path))
    else:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, use_fast=True).backend_tokenizer
        tok = Tokenizer.from_str(tok.to_str())
    tok.no_padding()
    tok.no_truncation()
    return tok


def padded_batch(token_ids: Sequence[Sequence[int]], inputs: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The model's ``inputs`` for one batch (ids padded with 0 to the longest, attention mask, all-zero
    token types; names the model does not take are left out) and the mask of real tokens."""
    lengths = np.array([len(i) for i in token_ids], dtype=np.int64)
    input_ids = np.zeros((len(token_ids), int(lengths.max())), dtype=np.int64)
    for r, row in enumerate(token_ids):
        input_ids[r, : len(row)] = row
    mask = (np.arange(input_ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
    feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
    return {k: feed[k] for k in inputs if k in feed}, mask


def truncating_tokenizer(folder: str, max_length: int):
    """A copy of the model's tokenizer that truncates at ``max_length`` tokens, as the model sees text."""
    shared = fast_tokenizer(folder)
    tok = type(shared).from_str(shared.to_str())
    tok.enable_truncation(max_length)
    return tok
