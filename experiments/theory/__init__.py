"""Section 3 of the paper (Figures 2 and 3): exact match probabilities, simulations, figures."""
