"""Module files that TFX components load by import path: Transform's preprocessing_fn, the Trainer's run_fn and
the Evaluator's Cohen's kappa metric."""
