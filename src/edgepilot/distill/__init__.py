"""Distillation: teacher trajectories in the runtime's own prompts become the small models it runs.

``collect`` (teacher roll-outs on the task suite) → ``synth`` (extra examples) → ``encode`` (token ids) →
``train`` (LoRA on the GGUF base, torch) → ``export`` (GGUF adapter, merged and quantized models) → ``evaluate``
(held-out episodes). ``edgepilot distill --help`` runs each; docs/distill.md says how.
"""
