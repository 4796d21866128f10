# What a user's program imports to write a pipeline (CPython only; devices never import it).
#
#   from sensormesh.api import Pipeline, merge
#   p = Pipeline("alarm")
#   p.device("esp-1", interpreter="micropython", sensors=["dht11"], address="192.168.1.20:7001")
#   p.source("dht11").field("temperature").window(time_frame=1000).alarm(high=30, low=28).sink.print()
#   print(p.plan("optimal").table())
#
# The implementation lives in sensormesh/controller/ (builder.py, model.py, placement.py).
from sensormesh.controller.builder import FilePipeline, Pipeline, Stream, load, merge  # noqa: F401
from sensormesh.controller.errors import (  # noqa: F401
    ModelError, PipelineError, PipelineFileError, PlacementError, ShippingError)
from sensormesh.controller.placement import Placement, place  # noqa: F401

__all__ = ["Pipeline", "FilePipeline", "Stream", "merge", "load", "place", "Placement", "PipelineError", "ModelError",
           "PipelineFileError", "PlacementError", "ShippingError"]
