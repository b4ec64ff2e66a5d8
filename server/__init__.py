"""FastAPI control plane and live dashboard for the stall_then_strike bot."""
