"""Example data: a procedural dermoscopy-like dataset in the exact on-disk layout of a real one.

``cases.py`` draws the cases and their labels; ``render.py`` paints them; ``layouts.py`` writes them
in each supported layout; ``write.py`` is ``lesionaug demo-data``.
"""
