"""Step 1, the dataset: a folder on disk read into a ``DatasetIndex``.

``index.py`` reads a folder (layout, samples, splits, problems, fingerprint); ``layouts/`` holds one
reader per supported layout; ``files.py`` reads image and mask files; ``labels.py`` is the one label
vocabulary; ``label_read.py`` and ``label_write.py`` read and write each layout's label files with one
column vocabulary (``label_columns.py``); ``summary.py`` is what ``lesionaug info`` reports.
"""
