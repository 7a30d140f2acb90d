"""Per-item seeds derived from (master seed, item index), never from loop position.

``numpy.random.SeedSequence(master, spawn_key=(index,))`` gives every index its own independent
stream, so item k gets the same seeds whether a run makes 10 items or 5,000, in any batch size,
shard or order. Each stream number names one use of randomness.
"""

from __future__ import annotations

import numpy as np

MASK_STREAM = 0
NOISE_STREAM = 1
LABEL_STREAM = 2
MAX_SEED = 2**63  # seeds are non-negative and below this (torch.Generator.manual_seed accepts them)


def derive_seed(master_seed: int, index: int, stream: int) -> int:
    """A seed in [0, 2**63) for ``stream`` of item ``index`` under ``master_seed``."""
    if master_seed < 0 or index < 0:
        raise ValueError(f"seeds and indices are non-negative, got seed {master_seed}, index {index}")
    if stream < 0:
        raise ValueError(f"stream numbers are non-negative, got {stream}")
    # generate_state's words do not depend on how many are asked for, so stream s is word s.
    state = np.random.SeedSequence(master_seed, spawn_key=(index,)).generate_state(stream + 1, np.uint64)
    return int(state[stream] >> np.uint64(1))


def derive_attempt_seed(master_seed: int, index: int, attempt: int, stream: int = NOISE_STREAM) -> int:
    """A seed for retry ``attempt`` (2, 3, ...) of item ``index``: a stream of its own, independent
    of the item's first draw (``derive_seed``) and of every other item's and attempt's."""
    if master_seed < 0 or index < 0 or attempt < 2:
        raise ValueError(f"retries are attempts 2, 3, ... of a non-negative seed and index, got {attempt}")
    state = np.random.SeedSequence(master_seed, spawn_key=(index, attempt)).generate_state(stream + 1, np.uint64)
    return int(state[stream] >> np.uint64(1))
