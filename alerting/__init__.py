"""coldchain alerting."""
