"""Content-safety checks on prompts and outputs: one small interface, several checkers.

What this does: flags text that matches configured patterns (``local``), that a guard model
served by you judges unsafe (``judge``), or that Azure AI Content Safety scores at or above a
severity (``azure``). What it does not do: it does not make a deployment safe. Patterns miss
paraphrases, other languages and encodings; a judge model can be wrong and can itself be
prompt-injected by the text it reads; none of them see images, tool calls or what a user does
with an answer. Use a gate to catch the obvious and to measure, not as the only control.
"""

from servemark.safety.base import Category, SafetyChecker, Verdict

__all__ = ["Category", "SafetyChecker", "Verdict"]
