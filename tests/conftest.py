"""Shared pytest set-up. Keep it generic: each fixture small, named for what it provides."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# No test may reach the Hugging Face Hub; tiny models are built from configs.
os.environ["HF_HUB_OFFLINE"] = "1"
# Nor write into the user's cache folder (engines record their graph hashes there when they load);
# tests that need a cache of their own point LESIONAUG_CACHE at it.
if "LESIONAUG_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="lesionaug-test-cache-")
    atexit.register(shutil.rmtree, _cache, True)
    os.environ["LESIONAUG_CACHE"] = _cache


@pytest.fixture(scope="session")
def demo_isic2018(tmp_path_factory):
    """A 24-pair isic2018 demo dataset at 64 px: train/val/test folders, Task 3 diagnoses, Task 2
    attribute masks. Shared by the session: treat it as read-only."""
    from lesionaug.demo.write import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "isic2018", n=24, layout="isic2018", size=64, seed=0)
