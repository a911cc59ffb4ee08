"""coldchain bench."""
