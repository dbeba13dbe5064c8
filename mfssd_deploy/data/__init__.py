"""Datasets: synthetic generator, COCO and VOC annotation loading, torch datasets and SSD augmentation."""
