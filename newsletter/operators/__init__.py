"""The people and systems that run the newsletter: console operators, API tokens, the audit log."""
