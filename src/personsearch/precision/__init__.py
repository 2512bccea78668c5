"""Inference precision: the fp32 / bf16 / int8 paths of a trained model, INT8 checkpoints
(ONNX Runtime post-training static quantization) and ``--precision auto``'s per-machine choice.
Entry point: ``precision.load.load_for_inference``; docs/precision.md."""
