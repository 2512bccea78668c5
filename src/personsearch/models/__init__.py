"""Models: backbones, RPN, sequential RoI heads, embedding and the assembled detector."""

from personsearch.models.detector import Detections, PersonSearchModel, TrainOutput, build_model

__all__ = ["Detections", "PersonSearchModel", "TrainOutput", "build_model"]
