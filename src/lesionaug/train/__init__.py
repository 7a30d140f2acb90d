"""Training the generator: a dataset's training split + a base -> a model folder.

``config.py`` holds ``TrainConfig`` and its checks; ``networks.py`` builds the networks (the compact
pixel model, or a ControlNet on a Stable Diffusion base); ``data.py`` loads training pairs;
``loop.py`` is one training stage; ``run.py`` a whole run; ``checkpoints.py`` makes runs resumable;
``sample_grids.py`` draws validation grids; ``model_folder.py`` writes the diffusers-layout folder.
"""
