"""lesionaug: augment skin-lesion segmentation datasets with mask-conditioned ControlNet generation."""

__version__ = "0.1.0"
