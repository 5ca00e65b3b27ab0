"""The HTTP face of the service: one Blueprint per area, one function per endpoint."""
