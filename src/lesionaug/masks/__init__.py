"""Step 2, masks: new lesion masks, from a shape model fitted on the training masks or from real ones.

``shape_model.py`` fits and samples the statistical shape model; ``jitter.py`` reuses real training
masks with a random affine and elastic warp; ``sampling.py`` chooses between them per job;
``geometry.py`` rasterises outlines; ``features.py`` and ``realism.py`` measure how real sampled masks
look; ``model_file.py`` saves a fitted model; ``training_masks.py`` picks a dataset's masks to fit on.
"""
