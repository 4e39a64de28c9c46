#!/usr/bin/env bash
# Table 1 on the synthetic benchmark (issue 7): the four editing methods of the default
# suite, then the VR-FAM bundle on the eager, ort fp32 and ort int8 backends.
#
#   scripts/compare_methods.sh        # writes $OUT/*.json and $OUT/tables.md
#
# Every eval draws the same held-out faces (seed 20261126) and edits each attribute at
# alpha -1.5, -1, 1 and 1.5. SUITE picks another suite than the shipped one.
set -euo pipefail

VRFAM=${VRFAM:-.venv/bin/vrfam-rt}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/table1-synthetic}
SAMPLES=${SAMPLES:-512}
THREADS=${THREADS:-2}
SUITE_ARGS=(); [[ -n "${SUITE:-}" ]] && SUITE_ARGS=(--bundle "$SUITE")
mkdir -p "$OUT"
EVAL=("$VRFAM" eval "${SUITE_ARGS[@]}" --samples "$SAMPLES" --threads "$THREADS")

for method in interfacegan interfacegan-conditional e4e-linear vrfam; do
    echo "== $method"
    "${EVAL[@]}" --method "$method" --json "$OUT/$method.json"
done

# Backends: the ONNX export happens once into the bundle's cache; INT8 graphs (u8 x s8,
# ONNX Runtime's x86 kernels) are calibrated on 64 generator samples.
echo "== vrfam, ort fp32"
"${EVAL[@]}" --backend ort --json "$OUT/vrfam-ort-fp32.json"
CACHE=$("$PY" - "${SUITE:-}" <<'PYTHON'
import sys
from vrfam_rt.bundle import Bundle
from vrfam_rt.cli.common import cache_root
from vrfam_rt.on_demand import cache_dir
from vrfam_rt.suite import member
print(cache_dir(Bundle.load(member(sys.argv[1] or None, "vrfam")), cache_root()))
PYTHON
)
BUNDLE=$("$PY" -c "import sys; from vrfam_rt.suite import member; print(member(sys.argv[1] or None))" "${SUITE:-}")
if [[ ! -d "$CACHE/int8-cpu" ]]; then
    "$VRFAM" calibrate --bundle "$BUNDLE" --samples 64 --target cpu \
        --components encoder,generator --out "$CACHE"
fi
echo "== vrfam, ort int8"
"${EVAL[@]}" --backend ort --precision int8 --json "$OUT/vrfam-ort-int8.json"

{
    echo "## Methods"
    echo
    "$PY" -m vrfam_rt.benchmarks.compare InterFaceGAN="$OUT/interfacegan.json" \
        "InterFaceGAN (conditional)"="$OUT/interfacegan-conditional.json" \
        "e4e-style linear"="$OUT/e4e-linear.json" VR-FAM="$OUT/vrfam.json"
    echo
    echo "## Backends (VR-FAM)"
    echo
    "$PY" -m vrfam_rt.benchmarks.compare "eager fp32"="$OUT/vrfam.json" \
        "ort fp32"="$OUT/vrfam-ort-fp32.json" "ort int8"="$OUT/vrfam-ort-int8.json"
} > "$OUT/tables.md"
echo "wrote $OUT/tables.md"
