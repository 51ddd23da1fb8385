"""Data: readers for raw text and task files, pretraining examples (segments, SOP, n-gram masking)."""
