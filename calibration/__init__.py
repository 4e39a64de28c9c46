"""vrfam_rt.calibration: INT8 calibration data and explicit Q/DQ quantization."""
