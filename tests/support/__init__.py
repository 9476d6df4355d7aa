"""Test support: fixtures and helper processes shared by the tiers."""
