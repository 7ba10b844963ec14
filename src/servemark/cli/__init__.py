"""Thin Typer commands: parse, call the library, render. The only place that prints or exits."""
