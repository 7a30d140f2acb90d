"""Every file name and format tag lesionaug reads or writes, defined once.

A folder's kind is told by its card (``lesionaug.json``) and the ``format`` tag inside it; the
augmented folder's records and the training run's marker have fixed names. Change a tag's version
only together with a reader for the old one.
"""

from __future__ import annotations

# Cards: the model folder's and the engine folder's ``lesionaug.json``.
CARD_NAME = "lesionaug.json"
MODEL_FORMAT = "lesionaug.model/1"
ENGINE_FORMAT = "lesionaug.engine/1"
FILE_HASHES_NAME = "file-hashes.json"  # in the cache folder: graph sha256 by path, size and times

# A training run's output folder.
TRAIN_RUN_MARKER = "lesionaug-train.json"
PIPELINE_INDEX_NAME = "model_index.json"  # a latent model folder as one diffusers pipeline
TRAIN_RUN_FORMAT = "lesionaug.train-run/1"
# Each checkpoint's optimizer, schedule and random states: the one pickle file lesionaug writes, read
# back only by `train --resume`, with torch.load(weights_only=True), which rebuilds tensors and plain
# containers and runs no code. Model folders keep their checkpoints, so the pickle check passes over it.
CHECKPOINT_STATE_FILES = "checkpoints/*/state.pt"
LOSS_LOG_NAME = "loss.csv"  # step,stage,loss,lr of every optimizer step
LOSS_CURVE_NAME = "loss_curve.png"
TRACKER_DIR = "logs"  # accelerate's trackers (train --report-to)
SHAPE_MODEL_FORMAT = "lesionaug.shape_model/1"

# An augmented folder: one manifest line per synthetic pair, the run record, the writer's lock.
MANIFEST_NAME = "lesionaug-manifest.jsonl"
RUN_NAME = "lesionaug-run.json"
RUN_SCHEMA = "lesionaug.run/1"
LOCK_NAME = ".lesionaug.lock"
PLAN_FORMAT = "lesionaug.plan/1"

# Files being written carry this in their temporary name.
TMP_MARK = ".lesionaug-tmp-"

# Reports and the command line's ``--json`` envelope.
REPORT_SCHEMA = "lesionaug.report/1"
RESULT_SCHEMA = "lesionaug.result/1"
PROJECT_CONFIG_NAME = "lesionaug.toml"  # option values read from the working directory when present

# Example data written by ``lesionaug demo-data``.
DEMO_MARKER = ".lesionaug-demo.json"

# Datalists for other segmentation stacks, written by ``lesionaug datalist``.
DATALIST_MARKER = ".lesionaug-datalist.json"
DATALIST_FORMATS = ("monai", "nnunet", "hf", "csv")
MONAI_DATALIST_NAME = "datalist.json"
CSV_DATALIST_NAME = "datalist.csv"
NNUNET_DATASET_JSON = "dataset.json"
NNUNET_SPLITS_NAME = "splits_final.json"
HF_METADATA_NAME = "metadata.jsonl"
