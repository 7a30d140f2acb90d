"""The label map's channels: a lesion's labels as numbers, for generators conditioned on a label map
(Pix2PixHD) rather than on text.

    label_vector(Labels(diagnosis="mel", attributes=("streaks",)))  # one-hot diagnosis + attribute flags

Channel 0 of a label map is the lesion mask; then one channel per diagnosis code of
``dataset/labels.py`` (one-hot, all zero when unknown) and one per dermoscopic attribute (1 where
present), each set inside the lesion only. The vocabulary is the fixed one of ``labels.py``, not the training set's, so a model's
input layout never depends on which labels its data happened to hold; the model card records it.
"""

from __future__ import annotations

from lesionaug.dataset.labels import ATTRIBUTE_ORDER, DIAGNOSES, Labels

DIAGNOSIS_CHANNELS: tuple[str, ...] = tuple(DIAGNOSES)
ATTRIBUTE_CHANNELS: tuple[str, ...] = ATTRIBUTE_ORDER
LABEL_CHANNELS = 1 + len(DIAGNOSIS_CHANNELS) + len(ATTRIBUTE_CHANNELS)


def label_vector(labels: Labels | None) -> list[float]:
    """The channels of one lesion besides its mask: one-hot diagnosis, then one flag per attribute."""
    diagnosis = [0.0] * len(DIAGNOSIS_CHANNELS)
    attributes = [0.0] * len(ATTRIBUTE_CHANNELS)
    if labels is not None:
        if labels.diagnosis in DIAGNOSIS_CHANNELS:
            diagnosis[DIAGNOSIS_CHANNELS.index(labels.diagnosis)] = 1.0
        for attribute in labels.attributes:
            if attribute in ATTRIBUTE_CHANNELS:
                attributes[ATTRIBUTE_CHANNELS.index(attribute)] = 1.0
    return diagnosis + attributes


def label_channel_names() -> list[str]:
    """What each input channel means, in order (recorded in the model and engine cards)."""
    return ["mask", *(f"diagnosis:{d}" for d in DIAGNOSIS_CHANNELS), *(f"attribute:{a}" for a in ATTRIBUTE_CHANNELS)]
