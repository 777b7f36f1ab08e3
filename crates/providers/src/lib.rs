//! OpenAI-compatible model client: retries with backoff and Retry-After, concurrency, cost.
