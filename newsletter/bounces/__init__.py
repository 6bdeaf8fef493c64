"""Bounces and complaints: parsing reports (pure) and acting on them."""
