"""Building, rendering and delivering mail."""
