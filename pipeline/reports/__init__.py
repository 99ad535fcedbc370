"""report.json and what is rendered from it: the record walker, Markdown, JUnit, HTML, diff."""
