"""Figure-of-merit suites and sweep matrices: offline (vllm.LLM) or online batch measurements,
appended to CSV files in our format or the column sets sites already parse, resumable."""
