"""The polyphone classifier: a small BERT (ONNX) that picks the reading of characters such as 行 or 长.

The model reads `[CLS]` followed by one token per character of a Mandarin run and scores every
position against all 391 labelled readings (`中{zhong4}`, ...). The reference runs it once per
polyphonic character, each time on the same run, and keeps one position; the scores do not depend on
which position is wanted, so one run per distinct text gives every position's answer.

The model has no attention-mask input, so padding would change its scores. Texts are therefore
batched by exact length: one `session.run` per distinct length, which returns the same numbers as
running each text alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime

CLS_TOKEN = "[CLS]"
UNKNOWN_TOKEN = "[UNK]"
MAX_TEXT_CHARS = 511  # BERT's 512 positions, one taken by [CLS]
MAX_BATCH_ROWS = 64


class PolyphoneModel:
    """Answers "which reading" for every character of Mandarin runs, many runs per model call."""

    def __init__(
        self,
        model_path: Path,
        vocab: dict[str, int],
        classes: dict[int, str],
        threads: int = 0,
    ) -> None:
        """Open the ONNX session on CPU; `threads` 0 lets onnxruntime use every core."""
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._vocab = vocab
        self._unknown_id = vocab[UNKNOWN_TOKEN]
        self._cls_id = vocab[CLS_TOKEN]
        self._classes = classes

    def token_ids(self, text: str) -> list[int]:
        """The model input for `text`: [CLS] then each character's id ([UNK] when not in the vocabulary)."""
        return [self._cls_id, *(self._vocab.get(char, self._unknown_id) for char in text)]

    def readings(self, texts: Sequence[str]) -> dict[str, list[str]]:
        """For each distinct text, the labelled reading the model picks at every character position."""
        by_length: dict[int, list[str]] = defaultdict(list)
        for text in dict.fromkeys(texts):
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(f"polyphone model input of {len(text)} characters exceeds {MAX_TEXT_CHARS}")
            by_length[len(text)].append(text)
        answers: dict[str, list[str]] = {}
        for group in by_length.values():
            for start in range(0, len(group), MAX_BATCH_ROWS):
                batch = group[start : start + MAX_BATCH_ROWS]
                ids = np.array([self.token_ids(text) for text in batch], dtype=np.int32)
                scores = self._session.run(["outputs"], {"input_ids": ids})[0]
                for text, best in zip(batch, np.argmax(scores, axis=2), strict=True):
                    answers[text] = [self._classes[int(index) + 1] for index in best]
        return answers
