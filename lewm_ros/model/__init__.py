"""World model: config presets, encoders, predictor, SIGReg, checkpoints (torch only)."""
