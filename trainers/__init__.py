"""Importing ``trainers.<module>`` registers its trainers in the active engine's registry."""
