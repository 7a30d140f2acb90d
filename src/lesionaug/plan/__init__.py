"""Step 3, the plan: what pair k will be, decided before any model runs.

``prompts.py`` turns labels into text; ``jobs.py`` builds the ``GenerationPlan`` (job k = id, mask
seed, prompt, noise seed); ``mask_folder.py`` is ``lesionaug masks``: a plan's masks written to a
folder without generating images.
"""
