"""vrfam_rt.export: lowering bundles to ONNX (graph surgery, precision variants, checks)."""
