"""coldchain simulator."""
