"""The run record: its layout, the Statement it carries, writing and reading it."""
