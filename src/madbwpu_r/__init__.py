"""madbwpu-r: versioned datasets served through edge -> API -> workers."""

__version__ = "0.1.0"
