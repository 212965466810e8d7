"""Policies: what answers a prompt (an OpenAI-compatible endpoint or the embedded table policy).

Import from the modules: ``orbit.policies.uri.load_policy``, ``orbit.policies.base.Policy``...
(this package imports nothing so the table policy loads without the openai client).
"""
