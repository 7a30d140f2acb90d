"""Step 10, datalists: a dataset folder (augmented or plain) in the formats other segmentation stacks load.

``selection.py`` chooses the samples (real training subset, synthetic count, validation, test);
``lists.py`` writes the MONAI datalist JSON and the CSV (paths to the folder's own files);
``nnunet_raw.py`` writes an nnU-Net v2 raw dataset (PNG copies, labels 0/1); ``hf_folder.py`` a
Hugging Face ``imagefolder``; ``run.py`` is ``lesionaug datalist``.
"""
