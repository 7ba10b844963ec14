"""Interactive chat with a served model: streaming answers, history, TTFT and tokens/s."""
