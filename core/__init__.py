"""Shared domain: types, clock, settings, chain file, registry, InfluxDB adapter."""
