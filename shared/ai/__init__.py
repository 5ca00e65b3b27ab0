"""Model clients: OpenAI / Azure OpenAI (Entra ID), the LLM mem0 calls, embedders."""
