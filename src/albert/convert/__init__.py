"""Conversions: TensorFlow checkpoints, BERT directories, ONNX and sentence-transformers export."""
