"""The synthetic world: procedural faces with known attributes (`faces`) and the
oracles that read them (`oracles`). Training makes the default model from it; the
run-time commands use it too (`eval`'s metrics, `edit --judge`, `synth`)."""
