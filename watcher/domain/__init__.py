"""Values the service reasons about: positions, the live market view, alerts."""
