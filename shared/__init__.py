"""Core of the memory service: settings, contract, memory service, chat agent, stores."""

SERVICE_NAME = "Memory Layer"
VERSION = "2.0.0"
