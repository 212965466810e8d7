"""LLM training for the flywheel: a LoRA SFT run in the training tool venv, launched and served from here.

``sft_lora.py`` runs inside the tool venv (torch, transformers, trl, peft, gguf); ``llm.py`` is the engine
side (no torch): it prepares the round's SFT rows, launches the trainer as a subprocess, serves the
written GGUF with llama.cpp on loopback and writes the checkpoint manifest the checkpoint sensor reads.
"""
