"""Processes and jobs we start (vLLM servers, later replicas, Ray, SLURM) and their cleanup."""
