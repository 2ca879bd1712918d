"""The summary report of a sweep: HTML, Markdown and ``summary/*.parquet`` from its rows."""
