"""Test and demo infrastructure (QRS and Engine simulators, certificates).

Nothing on the production path imports this package.
"""
