"""HTTP client side: SSE framing, OpenAI request/response handling, transport."""
