"""coldchain api."""
