"""Workloads: what each request sends (token-exact synthetic prompts; more in later issues)."""
