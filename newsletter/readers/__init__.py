"""Readers: who they are, what they agreed to, and who must never be mailed."""
