"""``lesionaug augment``: a dataset folder -> an augmented copy.

``options.py`` is the one options object; ``preparation.py`` indexes the dataset and builds the plan;
``model_choice.py`` resolves which engine generates (given, or the dataset's cached compact model);
``loop.py`` is the generation loop; ``stop.py`` turns SIGINT/SIGTERM into a clean stop; ``run.py``
puts the steps together.
"""
