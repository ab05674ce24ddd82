"""Notebook widgets: live job progress and the field slicer (ipywidgets; the state
logic lives in plain classes so it is testable without a browser)."""

from .batch import BatchProgress, BatchView, TextBatchProgress, make_batch_display
from .progress import JobProgress, ProgressView, TextProgress, make_display
from .slicer import FieldSlicer, SlicerState

__all__ = ["BatchProgress", "BatchView", "TextBatchProgress", "make_batch_display", "FieldSlicer", "JobProgress", "ProgressView", "SlicerState", "TextProgress", "make_display"]
