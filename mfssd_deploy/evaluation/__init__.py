"""Evaluation of any detector callable: VOC07 11-point / all-point mAP and COCO AP via pycocotools."""

from mfssd_deploy.evaluation.runner import EvalResult, Predictor, evaluate

__all__ = ["EvalResult", "Predictor", "evaluate"]
