"""vrfam_rt.engines: building TensorRT plans from ONNX (profiles, caches, manifests)."""
