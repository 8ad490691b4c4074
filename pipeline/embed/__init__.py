"""Embed: segments to unit-length sentence vectors, offline (``encoder``); the ONNX Runtime backend
(``onnx_export``), its int8 weights (``int8``), what this CPU's int8 kernels can do (``cpu``) and the
tokenizer helpers both ONNX modules use (``tokens``)."""
