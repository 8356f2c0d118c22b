"""Latent MPC: the CEM solver and receding-horizon state (torch only)."""
