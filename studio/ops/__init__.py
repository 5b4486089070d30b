"""Pure array functions: no I/O, no model loading."""
