"""Digests: planning an edition, composing each reader's mail, sending it exactly once."""
