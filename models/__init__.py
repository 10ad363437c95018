"""The LLM side of Ember: finding and loading weights, fitting prompts, and the resident engine.

Submodules import torch and transformers; import them only where a model is really needed.
"""
