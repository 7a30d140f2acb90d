"""What synthetic pairs are worth: segmenters, metrics, quality measures and reports.

``segmenter.py`` trains MONAI U-Nets; ``metrics.py`` and ``scoring.py`` score masks the ISIC way;
``run.py`` is ``lesionaug evaluate``; ``quality.py`` is ``lesionaug quality``; ``feature_distance.py``
computes FID/KID with a user's extractor; ``report.py`` and ``plots.py`` write the report folder.
"""
