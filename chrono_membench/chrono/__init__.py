"""Chrono metrics and losses: small pure functions over tensors, each tested on hand-made cases."""
