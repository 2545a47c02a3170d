"""A Foreman project folder: templates that ``foreman init`` writes."""
