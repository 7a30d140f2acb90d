"""Export: a model folder -> an engine folder (ONNX graphs, verified against PyTorch, and a card).

``run.py`` exports and verifies; ``parts.py`` loads a model folder's parts and checks they fit;
``graphs.py`` defines the graphs as torch modules and exports them.
"""
