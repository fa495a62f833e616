"""Allocation service: MPI-D scoring, cluster model training and cluster prediction."""
