"""Notebook widgets: live job progress and the field slicer (ipywidgets; the state
logic lives in plain classes so it is testable without a browser)."""

from .progress import JobProgress, ProgressView, TextProgress, make_display
from .slicer import FieldSlicer, SlicerState

__all__ = ["FieldSlicer", "JobProgress", "ProgressView", "SlicerState", "TextProgress", "make_display"]
